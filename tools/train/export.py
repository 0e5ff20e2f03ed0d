#!/usr/bin/env python3
"""Writes a model directory the C++ engine (and tools/reference) loads:
config.json + model.safetensors (bf16 by default) + tokenizer.model.

    /usr/bin/python3 tools/train/export.py --ckpt .devdata/ckpt --tokenizer \\
        .devdata/train/tokenizer.model --out models/tome-small [--check]

--ckpt is a training checkpoint directory (train.py's --out); its model.safetensors
already holds the weights under the checkpoint's tensor names and state.json the
config. --check runs the reference model and the training model on a few hundred tokens
and compares logits.
"""

import argparse
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import safetensors_io  # noqa: E402


def export_model(model, out_dir, tokenizer_model=None, dtype="BF16", metadata=None):
    """model: model.SalaForCausalLM."""
    os.makedirs(out_dir, exist_ok=True)
    tensors = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    export_tensors(tensors, model.cfg.raw, out_dir, tokenizer_model, dtype, metadata)


def export_tensors(tensors, config, out_dir, tokenizer_model=None, dtype="BF16", metadata=None):
    os.makedirs(out_dir, exist_ok=True)
    cfg = dict(config)
    cfg["torch_dtype"] = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}[dtype]
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    safetensors_io.save_file(tensors, os.path.join(out_dir, "model.safetensors"), dtype=dtype,
                             metadata=dict(metadata or {}, format="pt"))
    if tokenizer_model:
        shutil.copyfile(tokenizer_model, os.path.join(out_dir, "tokenizer.model"))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="training checkpoint directory")
    ap.add_argument("--tokenizer", default=None, help="tokenizer.model (default: the one "
                    "named in the checkpoint's state.json, else .devdata/train/tokenizer.model)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="BF16", choices=["BF16", "F16", "F32"])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    with open(os.path.join(args.ckpt, "state.json")) as f:
        state = json.load(f)
    config = state["config"]
    ck = safetensors_io.Checkpoint(os.path.join(args.ckpt, "model.safetensors"))
    tensors = {k: ck.get(k) for k in ck.keys()}
    tok = args.tokenizer
    if tok is None:
        for cand in (os.path.join(state.get("args", {}).get("data", ""), "tokenizer.model"),
                     ".devdata/train/tokenizer.model"):
            if cand and os.path.exists(cand):
                tok = cand
                break
    if tok is None or not os.path.exists(tok):
        sys.exit("tokenizer.model not found; pass --tokenizer")
    export_tensors(tensors, config, args.out, tok, args.dtype,
                   metadata={"step": state.get("step", 0)})
    print("wrote %s (step %d)" % (args.out, state.get("step", 0)))
    if args.check:
        import numpy as np
        import torch
        import model as M
        import sala_reference as R
        ref = R.SalaModel.from_pretrained(args.out)
        tm = M.SalaForCausalLM(config, attn_impl="masked")
        sd = {k: torch.from_numpy(np.asarray(R.safetensors_io.Checkpoint(args.out).get(k)))
              for k in tensors}
        tm.load_state_dict(sd)
        tm.eval()
        ids = np.random.default_rng(0).integers(3, config["vocab_size"], size=1500)
        r = ref.forward(ids, mode="always_sparse")
        with torch.no_grad():
            logits = tm(torch.as_tensor(ids)[None])[0]
        err = float((logits - r.logits).abs().max() / r.logits.abs().max())
        print("check: max relative logit difference training model vs reference = %.2e" % err)
        if err > 1e-4:
            sys.exit(1)


if __name__ == "__main__":
    main()
