#!/usr/bin/env python3
"""SentencePiece-style BPE tokenizers as HF stores Llama 2's, Mistral's and TinyLlama's, for the
tokenizer parity tests.

    python3 scripts/reference/sentencepiece_tiny.py crates/minillm/tests/fixtures/sentencepiece

Trains, with HF tokenizers, one BPE over characters of 512 ids (as many as the tiny Llama
fixture's vocabulary, so the interop check can give it this tokenizer) with byte fallback
(<0x00>..<0xFF>) and <unk>, <s>, </s>, and writes it in the two forms HF uses:
  legacy.json      Llama 2's: a Prepend("▁") + Replace(" ", "▁") normalizer, no pre-tokenizer
  metaspace.json   newer files' (Mistral v0.3): a Metaspace pre-tokenizer, prepend_scheme "first"
                   (the same decoder: '▁' to spaces, byte fallback, the first space stripped)
both with the post-processor that puts <s> before every text.
"""
import json
import sys
from pathlib import Path

import llama_tiny
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

# llama_tiny.py's text, with the whitespace SentencePiece keeps inside its pieces.
TEXT = llama_tiny.TEXT + "Two  spaces, a tab\tand new lines\nare text too.\n"
SPECIALS = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]


def trained() -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=SPECIALS, show_progress=False)
    tok.train_from_iterator([TEXT] * 4, trainer)
    # Only <unk>, <s> and </s> are special; the byte tokens are ordinary vocabulary.
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B:1", special_tokens=[("<s>", 1)])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    return tok


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    legacy = trained()
    legacy.save(str(out / "legacy.json"))
    metaspace = trained()
    metaspace.normalizer = None
    metaspace.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    metaspace.save(str(out / "metaspace.json"))
    for name in ("legacy", "metaspace"):
        # The trainer lists the byte tokens among the added tokens; in Llama 2's file they are
        # ordinary vocabulary and only <unk>, <s> and </s> are added (special) tokens.
        path = out / f"{name}.json"
        doc = json.loads(path.read_text())
        doc["added_tokens"] = [t for t in doc["added_tokens"] if t["content"] in ("<unk>", "<s>", "</s>")]
        path.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
        tok = Tokenizer.from_file(str(path))
        print(name, tok.get_vocab_size(), tok.encode("Hello world, 日本 2024!").tokens,
              repr(tok.decode(tok.encode("Hello world, 日本 2024!").ids)))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "crates/minillm/tests/fixtures/sentencepiece"))
