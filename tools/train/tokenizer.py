"""The SentencePiece tokenizer of Tome's small model, as the server uses it.

The model (tokenizer.model, trained by prepare_data.py) uses identity normalisation, no
dummy prefix, no whitespace removal and byte fallback, so decode(encode(s)) == s for any
UTF-8 string, and "\\n" is always the single byte token <0x0A> (spm_train reads one line
at a time, so no learned piece contains a newline). Consequence used by the data pipeline:

    encode(a + b) == encode(a) + encode(b)
        whenever a ends with "\\n", or b starts with "\\n", or b starts with " " and a does
        not end with " "

(no piece spans such a boundary), so documents can be assembled from pre-tokenized lines
and separately tokenized needles/questions exactly as the server would tokenize the
concatenated text. tools/train/test_tasks.py checks this on the real model.
"""

BOS_ID = 1
EOS_ID = 2


class Tokenizer:
    def __init__(self, model_path):
        import sentencepiece as spm  # python3-sentencepiece (Debian) / pip sentencepiece
        self.sp = spm.SentencePieceProcessor()
        self.sp.Load(model_path)
        self.path = model_path
        self.vocab_size = self.sp.GetPieceSize()
        self.nl_id = self.sp.PieceToId("<0x0A>")
        if self.sp.bos_id() != BOS_ID or self.sp.eos_id() != EOS_ID:
            raise ValueError("%s: bos/eos ids are %d/%d, expected 1/2"
                             % (model_path, self.sp.bos_id(), self.sp.eos_id()))
        if self.nl_id <= 0 or self.sp.IdToPiece(self.nl_id) != "<0x0A>":
            raise ValueError("%s has no <0x0A> byte piece (byte_fallback off?)" % model_path)

    def encode(self, text):
        """Token ids of text, no BOS (as the server's Tokenizer::Encode)."""
        return list(self.sp.EncodeAsIds(text))

    def decode(self, ids):
        return self.sp.DecodeIds([int(i) for i in ids])


class ByteTokenizer:
    """Byte-level stand-in with the same interface (0 unk, 1 BOS, 2 EOS, byte b -> b + 3),
    the layout of the engine's byte tokenizer. Used by tests that must run without
    sentencepiece or prepared data. Trivially satisfies the concatenation property."""

    def __init__(self):
        self.vocab_size = 259
        self.nl_id = 10 + 3
        self.path = None

    def encode(self, text):
        return [b + 3 for b in text.encode("utf-8")]

    def decode(self, ids):
        return bytes(int(i) - 3 for i in ids if int(i) >= 3).decode("utf-8", "replace")


def load(model_path):
    return Tokenizer(model_path)
