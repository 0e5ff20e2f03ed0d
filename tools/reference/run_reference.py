#!/usr/bin/python3
"""Command-line front end of the SALA PyTorch reference.

Run the reference on a checkpoint:
    /usr/bin/python3 tools/reference/run_reference.py --model DIR --tokens FILE --out OUTDIR \
        [--mode hf|always_sparse] [--threads N]

Write a random checkpoint (config.json + model.safetensors, or shards with an index):
    /usr/bin/python3 tools/reference/run_reference.py --random-checkpoint OUTDIR \
        --config-json FILE --seed N [--dtype f32|bf16] [--max-shard-bytes N] [--std 0.02]

Write random token ids (raw little-endian int32) for a config:
    /usr/bin/python3 tools/reference/run_reference.py --random-tokens FILE --num-tokens N \
        --config-json FILE --seed N

See README.md for the output formats.
"""

import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import safetensors_io  # noqa: E402
import sala_reference as sr  # noqa: E402


def read_tokens(path):
    ids = np.fromfile(path, dtype="<i4")
    if ids.size == 0:
        raise ValueError("%s holds no tokens" % path)
    return ids.astype(np.int64)


def _write_raw(path, tensor, dtype):
    np.ascontiguousarray(tensor.detach().cpu().numpy().astype(dtype)).tofile(path)


def write_outputs(out_dir, cfg, res, mode, num_tokens):
    """Write logits, per-layer hidden states, selections, lightning states + manifest."""
    os.makedirs(out_dir, exist_ok=True)
    files = {}

    def put(fname, tensor, dtype, kind, layer=None):
        _write_raw(os.path.join(out_dir, fname), tensor, dtype)
        entry = {"kind": kind, "dtype": "float32" if dtype == "<f4" else "int32",
                 "shape": list(tensor.shape)}
        if layer is not None:
            entry["layer"] = layer
        files[fname] = entry

    put("logits.f32", res.logits, "<f4", "logits")
    for l, h in enumerate(res.hidden_states):
        put("hidden_%d.f32" % l, h, "<f4", "hidden", l)
    for l in cfg.sparse_layers:
        put("selected_%d.i32" % l, res.selected[l], "<i4", "selected", l)
    for l in cfg.lightning_layers:
        put("lightning_state_%d.f32" % l, res.lightning_states[l], "<f4", "lightning_state", l)
    manifest = {
        "num_tokens": int(num_tokens),
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_layers": cfg.num_hidden_layers,
        "sparse_layers": cfg.sparse_layers,
        "lightning_layers": cfg.lightning_layers,
        "topk_total": cfg.topk_total,
        "num_kv_heads": cfg.num_key_value_heads,
        "block_size": cfg.block_size,
        "lightning_heads": cfg.lightning_nh,
        "lightning_head_dim": cfg.lightning_head_dim,
        "mode": mode,
        "dense": {str(l): bool(res.dense[l]) for l in cfg.sparse_layers},
        "torch_version": torch.__version__,
        "files": files,
    }
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
    return manifest


def run(model_dir, tokens_path, out_dir, mode):
    model = sr.SalaModel.from_pretrained(model_dir)
    ids = read_tokens(tokens_path)
    res = model.forward(ids, mode=mode)
    return write_outputs(out_dir, model.cfg, res, mode, len(ids))


def make_random_checkpoint(out_dir, config_json, seed, dtype="f32", max_shard_bytes=None,
                           std=0.02):
    cfg = sr.SalaConfig.from_json_file(config_json)
    os.makedirs(out_dir, exist_ok=True)
    shutil.copyfile(config_json, os.path.join(out_dir, "config.json"))
    weights = sr.random_weights(cfg, seed, std=std)
    st_dtype = {"f32": "F32", "bf16": "BF16", "f16": "F16"}[dtype]
    return safetensors_io.save_checkpoint(weights, out_dir, dtype=st_dtype,
                                          metadata={"format": "pt"},
                                          max_shard_bytes=max_shard_bytes)


def make_random_tokens(path, config_json, num_tokens, seed):
    cfg = sr.SalaConfig.from_json_file(config_json)
    rng = np.random.default_rng(seed)
    rng.integers(0, cfg.vocab_size, size=num_tokens).astype("<i4").tofile(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint directory (config.json + safetensors)")
    ap.add_argument("--tokens", help="raw little-endian int32 token ids")
    ap.add_argument("--out", help="output directory")
    ap.add_argument("--mode", choices=sr.MODES, default="hf",
                    help="sparse-layer threshold mode (default hf)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--random-checkpoint", metavar="OUTDIR")
    ap.add_argument("--random-tokens", metavar="FILE")
    ap.add_argument("--num-tokens", type=int)
    ap.add_argument("--config-json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=("f32", "bf16", "f16"), default="f32")
    ap.add_argument("--max-shard-bytes", type=int, default=None)
    ap.add_argument("--std", type=float, default=0.02)
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    if args.random_checkpoint:
        if not args.config_json:
            ap.error("--random-checkpoint needs --config-json")
        files = make_random_checkpoint(args.random_checkpoint, args.config_json, args.seed,
                                       args.dtype, args.max_shard_bytes, args.std)
        print("wrote %s: config.json %s" % (args.random_checkpoint, " ".join(files)))
        return 0
    if args.random_tokens:
        if not args.config_json or not args.num_tokens:
            ap.error("--random-tokens needs --config-json and --num-tokens")
        make_random_tokens(args.random_tokens, args.config_json, args.num_tokens, args.seed)
        print("wrote %d tokens to %s" % (args.num_tokens, args.random_tokens))
        return 0
    if not (args.model and args.tokens and args.out):
        ap.error("--model, --tokens and --out are required")
    m = run(args.model, args.tokens, args.out, args.mode)
    print("wrote %s: %d tokens, %d files, mode %s, dense %s"
          % (args.out, m["num_tokens"], len(m["files"]), m["mode"], m["dense"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
