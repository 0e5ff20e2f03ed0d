#!/usr/bin/env python3
"""Trains Tome's small SALA model (model.py) on the prepared corpora (prepare_data.py)
with the curriculum of docs/MODEL.md. Resumable; one invocation fits in a device call.

On the GPU machine (repo root; .devdata/train and, after the first call, .devdata/ckpt
carried):

    python3 tools/train/train.py --data .devdata/train --out $OUT/ckpt \\
        --resume .devdata/ckpt --max-minutes 8 --total-steps 6000

then copy $OUT/ckpt back to .devdata/ckpt for the next call. --resume may be missing or
empty (fresh start). The checkpoint directory holds
    model.safetensors   weights, bf16, checkpoint tensor names (what export.py ships)
    optim.safetensors   AdamW moments, 8-bit (m: int8 absmax per 256; v: log-scale uint8)
    state.json          step, config, arguments, RNG states, eval history
    train.log           the log of every invocation so far
each file well under 16 MiB. Batches are a pure function of (--seed, step), so a resumed
run sees the same data it would have seen without the interruption.
"""

import argparse
import base64
import contextlib
import importlib
import json
import math
import multiprocessing
import os
import shutil
import sys
import threading
import time

import numpy as np
import torch
import torch.nn.functional as F

T_START = time.time()
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import corpus as corpus_mod  # noqa: E402
import model as M  # noqa: E402
import safetensors_io  # noqa: E402
import tasks  # noqa: E402
import tokenizer as tok_mod  # noqa: E402

PAD_ID = 0


# ------------------------------------------------------------------------------ curriculum
def curriculum(step, total, max_len, rng, schedule="base"):
    """(seq_len, make_example kwargs) of a step under a named schedule.

    "base" (training from scratch), fractions of --total-steps:
      [0, .15)   256-512 tokens, 2-5 needles, 2-4 questions, mostly key-value
                 (dense multi-query associative recall; all blocks fit in the selection)
      [.15, .35) 1K-4K
      [.35, .60) 4K-8K
      [.60, 1]   max_len/2 .. max_len (16K: 256 blocks, 20 read per query); 15% of these
                 steps replay the short multi-query batches

    "copy" (continued training of a model that already answers key-value questions, with
    --init): the same idea applied to continue-the-passage, which "base" never taught
    (its rows held one continue question in four):
      [0, .25)   256-512 tokens, 2-4 questions, 60% continue (dense: copy a quoted span's
                 continuation without any block selection in the way)
      [.25, .50) 1K-4K, 50% continue; 20% of steps replay the short rows
      [.50, 1]   max_len/2 .. max_len, 40% continue; 20% replay the short rows

    "copy-unseen": "copy" with questions that memory cannot answer (below).

    "scratch-copy" (training from scratch for all three tasks, after the "copy" runs showed
    that copying learned late costs key-value accuracy): "base"'s lengths, with the copy
    tasks from the first step and rows up to --max-len (meant for 32K), continue questions
    mostly about shuffled lines and sectioned documents mostly under invented names, so that
    only reading the document answers them:
      [0, .20)   256-512 tokens, 2-4 questions, kv/continue/section 45/40/15%
      [.20, .40) 1K-4K, 45/35/20%; 15% of steps replay the short rows
      [.40, .65) 4K-16K, 50/30/20%; 15% replay
      [.65, 1]   max_len/2 .. max_len, 50/30/20%; 15% replay

    "long-kv" (continued training of a model that answers key-value questions up to 16K,
    with --init, towards 128K-1M documents): every step at 16K, 32K or 64K tokens (those up
    to --max-len, equally likely) with 80% key-value questions, 15% of steps replaying the
    short rows of "base".
    """
    f = step / max(1, total)
    if schedule == "long-kv":
        short = dict(needles=(2, 5), questions=(2, 4),
                     task_weights={"kv": 0.7, "continue": 0.15, "section": 0.15})
        if rng.random() < 0.15:
            return int(rng.choice([256, 512])), short
        lengths = [L for L in (16384, 32768, 65536) if L <= max_len] or [max_len]
        return int(rng.choice(lengths)), dict(
            needles=(1, 6), questions=(1, 3),
            task_weights={"kv": 0.8, "continue": 0.1, "section": 0.1})
    if schedule == "scratch-copy":
        unseen = dict(scramble_p=0.7, rename_sections_p=0.7)
        short = dict(needles=(2, 5), questions=(2, 4), **unseen,
                     task_weights={"kv": 0.45, "continue": 0.4, "section": 0.15})
        if f < 0.2 or rng.random() < 0.15:
            return int(rng.choice([256, 512])), short
        if f < 0.4:
            return min(max_len, int(rng.choice([1024, 2048, 4096]))), dict(
                needles=(1, 4), questions=(1, 3), **unseen,
                task_weights={"kv": 0.45, "continue": 0.35, "section": 0.2})
        mixed = dict(needles=(1, 5), questions=(1, 3), **unseen,
                     task_weights={"kv": 0.5, "continue": 0.3, "section": 0.2})
        if f < 0.65:
            return min(max_len, int(rng.choice([4096, 8192, 16384]))), mixed
        return int(rng.choice([max(512, max_len // 2), max_len], p=[0.3, 0.7])), mixed
    if schedule == "copy-unseen":
        # "copy" on text the model cannot have memorised: 70% of continue questions ask
        # about a line with shuffled words, 70% of sectioned documents get invented
        # section names (see tasks.make_example)
        T, kw = curriculum(step, total, max_len, rng, "copy")
        return T, dict(kw, scramble_p=0.7, rename_sections_p=0.7)
    if schedule == "copy":
        short = dict(needles=(1, 3), questions=(2, 4),
                     task_weights={"kv": 0.25, "continue": 0.6, "section": 0.15})
        if f < 0.25:
            return int(rng.choice([256, 512])), short
        if rng.random() < 0.2:
            return int(rng.choice([256, 512])), short
        if f < 0.5:
            return min(max_len, int(rng.choice([1024, 2048, 4096]))), dict(
                needles=(1, 4), questions=(1, 3),
                task_weights={"kv": 0.35, "continue": 0.5, "section": 0.15})
        return int(rng.choice([max(512, max_len // 2), max_len], p=[0.4, 0.6])), dict(
            needles=(1, 5), questions=(1, 3),
            task_weights={"kv": 0.45, "continue": 0.4, "section": 0.15})
    short = dict(needles=(2, 5), questions=(2, 4),
                 task_weights={"kv": 0.7, "continue": 0.15, "section": 0.15})
    mixed = dict(needles=(1, 5), questions=(1, 3),
                 task_weights={"kv": 0.5, "continue": 0.25, "section": 0.25})
    if f < 0.15:
        return int(rng.choice([256, 512])), short
    if f < 0.35:
        return min(max_len, int(rng.choice([1024, 2048, 4096]))), mixed
    if f < 0.60:
        return min(max_len, int(rng.choice([4096, 8192]))), mixed
    if rng.random() < 0.15:
        return 512, short
    return int(rng.choice([max(512, max_len // 2), max_len], p=[0.3, 0.7])), mixed


def lr_at(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    f = min(1.0, (step - args.warmup) / max(1, args.total_steps - args.warmup))
    return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * f)))


# ------------------------------------------------------------------------------ data
class _Data:
    """Per-process data state (corpus + tokenizer), created lazily after fork."""
    inst = None

    def __init__(self, data_dir, split):
        self.tok = tok_mod.Tokenizer(os.path.join(data_dir, "tokenizer.model"))
        self.corpus = corpus_mod.Corpus.load(os.path.join(data_dir, split + ".npz"))

    @classmethod
    def get(cls, data_dir, split="train"):
        key = (data_dir, split, os.getpid())
        if cls.inst is None or cls.inst[0] != key:
            cls.inst = (key, cls(data_dir, split))
        return cls.inst[1]


def make_batch(data_dir, seed, step, total, max_len, tokens_per_step, answer_weight,
               fixed_len=0, schedule="base"):
    d = _Data.get(data_dir)
    rng = np.random.default_rng([seed, step])
    T, kw = curriculum(step, total, max_len, rng, schedule)
    if fixed_len:
        T = fixed_len
    B = max(1, tokens_per_step // T)
    ids = np.full((B, T), PAD_ID, dtype=np.int64)
    tgt = np.full((B, T), PAD_ID, dtype=np.int64)
    w = np.zeros((B, T), dtype=np.float32)
    spans = []
    for b in range(B):
        ex = tasks.make_example(d.corpus, d.tok, rng, T, "train", answer_weight=answer_weight,
                                **kw)
        L = len(ex.ids)
        ids[b, :L] = ex.ids
        tgt[b, :L - 1] = ex.ids[1:]
        w[b, :L - 1] = ex.weights
        spans += [(b, t, s, e) for (t, s, e) in ex.spans]
    return {"step": step, "ids": torch.from_numpy(ids), "tgt": torch.from_numpy(tgt),
            "w": torch.from_numpy(w), "spans": spans, "T": T}


class BatchStream(torch.utils.data.IterableDataset):
    def __init__(self, args, start):
        self.args = args
        self.start = start

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        k, n = (info.id, info.num_workers) if info else (0, 1)
        a = self.args
        step = self.start + k
        while True:
            yield make_batch(a.data, a.seed, step, a.total_steps, a.max_len, a.tokens_per_step,
                             a.answer_weight, a.fixed_len, a.schedule)
            step += n


def batches(args, start):
    if args.workers <= 0:
        ds = BatchStream(args, start)
        return iter(ds)
    dl = torch.utils.data.DataLoader(BatchStream(args, start), batch_size=None,
                                     num_workers=args.workers, prefetch_factor=4,
                                     persistent_workers=False)
    return iter(dl)


def make_eval_set(args, tok, heldout, lengths, docs_per_length):
    """Fixed held-out rows: one question per row (as the server asks), names/values from
    the evaluation set. Returns {length: [(ids, answer_start, answer_end, task)]}."""
    rng = np.random.default_rng([args.seed, 999])
    out = {}
    sources = sorted(heldout.by_source)
    for L in lengths:
        rows = []
        for i in range(docs_per_length):
            src = sources[i % len(sources)]
            doc, qas = tasks.make_eval_document(heldout, tok, rng, L - 64, source=src,
                                                n_needles=2, n_continue=1, n_section=1,
                                                sectioned=True, mix_sources=True)
            doc_ids = [tok_mod.BOS_ID] + doc.tokens().tolist()
            for qa in qas:
                q, a = tasks.encode_qa(tok, qa)
                ids = doc_ids + q + a
                if len(ids) > L:
                    continue
                rows.append((np.asarray(ids), len(doc_ids) + len(q) - 1,
                             len(doc_ids) + len(q) - 1 + len(a), qa.task))
        out[L] = rows
    return out


# ------------------------------------------------------------------------------ checkpoint
QBLOCK = 256


def _q_m(x):
    """int8 absmax quantisation per block of QBLOCK."""
    flat = x.float().reshape(-1)
    n = flat.numel()
    pad = (-n) % QBLOCK
    f = F.pad(flat, (0, pad)).reshape(-1, QBLOCK)
    scale = f.abs().amax(dim=1).clamp(min=1e-30) / 127.0
    q = torch.round(f / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q.reshape(-1)[:n], scale


def _dq_m(q, scale, shape):
    n = q.numel()
    pad = (-n) % QBLOCK
    f = F.pad(q.float(), (0, pad)).reshape(-1, QBLOCK) * scale[:, None]
    return f.reshape(-1)[:n].reshape(shape)


def _q_v(x):
    """v >= 0 on a log2 scale per block: code 0 = exact zero, 1..255 spread over [lo, hi]."""
    flat = x.float().reshape(-1)
    n = flat.numel()
    pad = (-n) % QBLOCK
    f = F.pad(flat, (0, pad)).reshape(-1, QBLOCK)
    pos = f > 0
    lg = torch.log2(torch.where(pos, f, torch.ones_like(f)))
    big = torch.tensor(1e30)
    lo = torch.where(pos, lg, big).amin(dim=1)
    hi = torch.where(pos, lg, -big).amax(dim=1)
    lo = torch.where(torch.isfinite(lo) & (lo < 1e29), lo, torch.zeros_like(lo))
    hi = torch.maximum(hi, lo)
    span = (hi - lo).clamp(min=1e-12)
    code = torch.round((lg - lo[:, None]) / span[:, None] * 254.0) + 1
    code = torch.where(pos, code, torch.zeros_like(code)).clamp(0, 255).to(torch.uint8)
    return code.reshape(-1)[:n], lo, hi


def _dq_v(code, lo, hi, shape):
    n = code.numel()
    pad = (-n) % QBLOCK
    c = F.pad(code.float(), (0, pad)).reshape(-1, QBLOCK)
    val = torch.pow(2.0, lo[:, None] + (c - 1) / 254.0 * (hi - lo)[:, None])
    val = torch.where(c > 0, val, torch.zeros_like(val))
    return val.reshape(-1)[:n].reshape(shape)


def _b64(t):
    return base64.b64encode(t.numpy().tobytes()).decode("ascii")


def save_checkpoint(out_dir, model, opt, state, log_path):
    os.makedirs(out_dir, exist_ok=True)
    tmp = lambda name: os.path.join(out_dir, name + ".tmp")  # noqa: E731
    weights = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    safetensors_io.save_file(weights, tmp("model.safetensors"), dtype="BF16",
                             metadata={"format": "pt", "step": state["step"]})
    opt_t = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p)
            if not st:
                continue
            n = names[id(p)]
            qm, sm = _q_m(st["exp_avg"].detach().cpu())
            qv, lo, hi = _q_v(st["exp_avg_sq"].detach().cpu())
            opt_t[n + ".m"] = qm.numpy()
            opt_t[n + ".m_scale"] = sm.numpy()
            opt_t[n + ".v"] = qv.numpy()
            opt_t[n + ".v_lo"] = lo.numpy()
            opt_t[n + ".v_hi"] = hi.numpy()
    if opt_t:
        safetensors_io.save_file(opt_t, tmp("optim.safetensors"))
    state = dict(state)
    state["rng"] = {"torch": _b64(torch.get_rng_state())}
    if torch.cuda.is_available():
        state["rng"]["cuda"] = _b64(torch.cuda.get_rng_state())
    with open(tmp("state.json"), "w") as f:
        json.dump(state, f, indent=1)
    for name in ("model.safetensors", "optim.safetensors", "state.json"):
        if os.path.exists(tmp(name)):
            os.replace(tmp(name), os.path.join(out_dir, name))
    if log_path and os.path.abspath(os.path.dirname(log_path)) != os.path.abspath(out_dir):
        shutil.copyfile(log_path, os.path.join(out_dir, "train.log"))


def load_checkpoint(ck_dir, model, opt, device):
    with open(os.path.join(ck_dir, "state.json")) as f:
        state = json.load(f)
    ck = safetensors_io.Checkpoint(os.path.join(ck_dir, "model.safetensors"))
    sd = {k: torch.from_numpy(np.array(ck.get(k))) for k in ck.keys()}
    model.load_state_dict(sd, strict=True)
    opath = os.path.join(ck_dir, "optim.safetensors")
    if opt is not None and os.path.exists(opath):
        oc = safetensors_io.Checkpoint(opath)
        keys = set(oc.keys())
        step_t = float(state["step"])
        for n, p in model.named_parameters():
            if n + ".m" not in keys:
                continue
            g = lambda s: torch.from_numpy(np.array(oc.get(n + s)))  # noqa: E731
            m = _dq_m(g(".m"), g(".m_scale"), p.shape)
            v = _dq_v(g(".v"), g(".v_lo"), g(".v_hi"), p.shape)
            opt.state[p] = {"step": torch.tensor(step_t), "exp_avg": m.to(device),
                            "exp_avg_sq": v.to(device)}
    rng = state.get("rng", {})
    if "torch" in rng:
        torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(rng["torch"])),
                                             dtype=torch.uint8))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(rng["cuda"])),
                                                  dtype=torch.uint8))
    return state


# ------------------------------------------------------------------------------ training
class Logger:
    def __init__(self, path):
        self.path = path
        os.makedirs(os.path.dirname(path), exist_ok=True)

    def __call__(self, *a):
        line = time.strftime("%Y-%m-%d %H:%M:%S ") + " ".join(str(x) for x in a)
        print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")


def _amp(enabled):
    if enabled:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def loss_and_stats(model, batch, device, amp):
    ids = batch["ids"].to(device, non_blocking=True)
    tgt = batch["tgt"].to(device, non_blocking=True)
    w = batch["w"].to(device, non_blocking=True)
    with _amp(amp):
        logits = model(ids)
    ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                         reduction="none").reshape(tgt.shape)
    loss = (ce * w).sum() / w.sum().clamp(min=1.0)
    with torch.no_grad():
        doc = (w == 1.0)
        lm = float((ce * doc).sum() / doc.sum().clamp(min=1))
        pred = logits.argmax(dim=-1)
        hit = (pred == tgt)
        ans_ce, ans_n = 0.0, 0
        stats = {}
        hit_cpu = hit.cpu()
        ce_cpu = ce.detach().float().cpu()
        for (b, task, s, e) in batch["spans"]:
            ok = bool(hit_cpu[b, s:e].all())
            c, n = stats.get(task, (0, 0))
            stats[task] = (c + ok, n + 1)
            ans_ce += float(ce_cpu[b, s:e].sum())
            ans_n += e - s
    return loss, lm, ans_ce / max(1, ans_n), stats


@torch.no_grad()
def evaluate(model, eval_set, device, amp, max_tokens_per_batch):
    model.eval()
    res = {}
    for L, rows in eval_set.items():
        B = max(1, max_tokens_per_batch // L)
        for i in range(0, len(rows), B):
            chunk = rows[i:i + B]
            T = L  # fixed shape: one compiled attention kernel per eval length
            ids = torch.zeros(B, T, dtype=torch.long)
            for j, r in enumerate(chunk):
                ids[j, :len(r[0])] = torch.from_numpy(r[0])
            with _amp(amp):
                logits = model(ids.to(device))
            pred = logits.argmax(dim=-1).cpu()
            for j, (x, s, e, task) in enumerate(chunk):
                ok = bool((pred[j, s:e] == torch.from_numpy(x[s + 1:e + 1])).all())
                c, n = res.get((task, L), (0, 0))
                res[(task, L)] = (c + ok, n + 1)
    model.train()
    return res


def fmt_acc(stats):
    return " ".join("%s=%d/%d" % (k if isinstance(k, str) else "%s@%d" % k, c, n)
                    for k, (c, n) in sorted(stats.items(), key=lambda kv: str(kv[0])))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=".devdata/train")
    ap.add_argument("--out", required=True, help="checkpoint directory to write")
    ap.add_argument("--resume", default=None, help="checkpoint directory to start from "
                    "(default: --out); ignored when it holds no state.json")
    ap.add_argument("--init", default=None, help="checkpoint directory whose weights start a "
                    "new run (step 0, fresh optimizer and schedule); ignored when resuming")
    ap.add_argument("--schedule", default="base",
                    choices=["base", "copy", "copy-unseen", "scratch-copy", "long-kv"],
                    help="curriculum (see curriculum()); keep it the same across calls")
    ap.add_argument("--config", default=None, help="config.json (default: model.DEFAULT_CONFIG)")
    ap.add_argument("--max-minutes", type=float, default=8.0,
                    help="wall-clock budget of this invocation, startup included")
    ap.add_argument("--total-steps", type=int, default=4000, help="length of the schedule "
                    "(keep it the same across resumed invocations)")
    ap.add_argument("--tokens-per-step", type=int, default=65536)
    ap.add_argument("--max-len", type=int, default=16384)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--answer-weight", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=min(12, max(0, (os.cpu_count() or 2) - 2)))
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--eval-lengths", default="1024,4096,16384")
    ap.add_argument("--eval-docs", type=int, default=10, help="held-out documents per length")
    ap.add_argument("--save-every-minutes", type=float, default=3.0)
    ap.add_argument("--reserve-seconds", type=float, default=45.0, help="time kept for the "
                    "final evaluation and checkpoint before --max-minutes")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--attn-impl", default="auto", choices=["auto", "flex", "masked"])
    ap.add_argument("--grad-checkpoint", action="store_true")
    ap.add_argument("--max-steps-this-run", type=int, default=0, help="stop after N steps (tests)")
    ap.add_argument("--fixed-len", type=int, default=0, help="every step at this length "
                    "(speed tests; overrides the curriculum's lengths)")
    args = ap.parse_args()

    device = torch.device(args.device)
    amp = device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        try:  # one compiled FlexAttention per (batch, length) shape, forward and backward
            dynamo_config = importlib.import_module("torch._dynamo").config
            dynamo_config.cache_size_limit = 64
            if hasattr(dynamo_config, "accumulated_cache_size_limit"):
                dynamo_config.accumulated_cache_size_limit = 512
        except Exception:  # noqa: BLE001
            pass
    log = Logger(os.path.join(args.out, "train.log"))
    resume = args.resume or args.out
    if resume and os.path.exists(os.path.join(resume, "train.log")) and \
            os.path.abspath(resume) != os.path.abspath(args.out):
        shutil.copyfile(os.path.join(resume, "train.log"), log.path)

    tok = tok_mod.Tokenizer(os.path.join(args.data, "tokenizer.model"))
    check_path = os.path.join(args.data, "tokenizer_check.json")
    if os.path.exists(check_path):
        with open(check_path) as f:
            for item in json.load(f):
                if tok.encode(item["text"]) != item["ids"]:
                    raise SystemExit("tokenizer mismatch on %r: this sentencepiece encodes "
                                     "differently from the one that prepared the data"
                                     % item["text"])
    heldout = corpus_mod.Corpus.load(os.path.join(args.data, "heldout.npz"))

    if args.config:
        with open(args.config) as f:
            config = json.load(f)
    else:
        config = dict(M.DEFAULT_CONFIG)
        config["vocab_size"] = tok.vocab_size
    state = None
    resuming = bool(resume and os.path.exists(os.path.join(resume, "state.json")))
    init = args.init if (args.init and not resuming) else None
    for ck in filter(None, [resume if resuming else None, init]):
        with open(os.path.join(ck, "state.json")) as f:
            config = json.load(f)["config"]
    model = M.SalaForCausalLM(config, attn_impl=args.attn_impl)
    model.init_weights(seed=args.seed)
    model.checkpoint_layers = args.grad_checkpoint
    model.to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt_kw = dict(lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], **opt_kw)
    step = 0
    history = []
    device_seconds = 0.0
    prior = {}  # the run that --init started from: its steps and training seconds
    if resuming:
        state = load_checkpoint(resume, model, opt, device)
        step = int(state["step"])
        history = state.get("eval_history", [])
        device_seconds = float(state.get("train_seconds", 0.0))
        prior = state.get("init_from", {})
        log("resumed from %s at step %d" % (resume, step))
    elif init:
        init_state = load_checkpoint(init, model, None, device)
        prior = {"dir": init, "steps": int(init_state["step"]),
                 "train_seconds": float(init_state.get("train_seconds", 0.0)),
                 "before": init_state.get("init_from", {})}
        log("weights from %s (step %d of its run); new schedule from step 0"
            % (init, prior["steps"]))
    n_params = model.num_parameters()
    log("model: %d parameters (%.1f MB bf16), layers %s, impl %s, device %s"
        % (n_params, 2 * n_params / 1e6, "".join("S" if t == M.SPARSE else "L"
                                                  for t in config["mixer_types"]),
           model.impl_for(device), device))
    log("args: " + json.dumps(vars(args), sort_keys=True))

    eval_lengths = [int(x) for x in args.eval_lengths.split(",") if x and int(x) <= args.max_len]
    eval_set = make_eval_set(args, tok, heldout, eval_lengths, args.eval_docs)
    log("eval set: " + ", ".join("%d tokens: %d questions" % (L, len(r))
                                 for L, r in eval_set.items()))

    stream = batches(args, step)
    budget = args.max_minutes * 60.0
    last_save = time.time()
    acc_stats, lm_sum, ans_sum, loss_sum, nlog, tok_count = {}, 0.0, 0.0, 0.0, 0, 0
    t_log = time.time()
    step_times = []
    steps_this_run = 0
    model.train()
    while True:
        elapsed = time.time() - T_START
        # the first steps of a shape include compilation; judge by the recent ones
        est_step = float(np.median(step_times[-20:])) if len(step_times) >= 5 else 2.0
        if elapsed + 3 * est_step + args.reserve_seconds > budget:
            log("time budget reached (%.1f of %.1f min)" % (elapsed / 60, args.max_minutes))
            break
        if args.max_steps_this_run and steps_this_run >= args.max_steps_this_run:
            break
        t0 = time.time()
        batch = next(stream)
        assert batch["step"] == step, (batch["step"], step)
        lr = lr_at(step, args)
        for g in opt.param_groups:
            g["lr"] = lr
        loss, lm, ans, stats = loss_and_stats(model, batch, device, amp)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.time() - t0
        step_times.append(dt)
        device_seconds += dt
        step += 1
        steps_this_run += 1
        loss_sum += float(loss.detach())
        lm_sum += lm
        ans_sum += ans
        nlog += 1
        tok_count += batch["ids"].numel()
        for k, (c, n) in stats.items():
            c0, n0 = acc_stats.get(k, (0, 0))
            acc_stats[k] = (c0 + c, n0 + n)
        if step % args.log_every == 0:
            now = time.time()
            log("step %d T=%d B=%d lr=%.2e loss=%.4f lm=%.4f ans=%.4f gnorm=%.2f "
                "tok/s=%.0f train_acc: %s" % (
                    step, batch["T"], batch["ids"].shape[0], lr, loss_sum / nlog,
                    lm_sum / nlog, ans_sum / nlog, float(gnorm), tok_count / (now - t_log),
                    fmt_acc(acc_stats)))
            acc_stats, lm_sum, ans_sum, loss_sum, nlog, tok_count = {}, 0.0, 0.0, 0.0, 0, 0
            t_log = now
        if step % args.eval_every == 0:
            res = evaluate(model, eval_set, device, amp, args.tokens_per_step)
            log("eval step %d: %s" % (step, fmt_acc(res)))
            history.append({"step": step, "acc": {"%s@%d" % k: v for k, v in res.items()}})
        if time.time() - last_save > args.save_every_minutes * 60:
            save_checkpoint(args.out, model, opt, _state(step, config, args, history,
                                                        device_seconds, prior), log.path)
            last_save = time.time()
    res = evaluate(model, eval_set, device, amp, args.tokens_per_step)
    log("eval step %d: %s" % (step, fmt_acc(res)))
    history.append({"step": step, "acc": {"%s@%d" % k: v for k, v in res.items()}})
    save_checkpoint(args.out, model, opt, _state(step, config, args, history, device_seconds,
                                                    prior), log.path)
    log("saved %s at step %d (%.1f min wall, %.1f min of training steps in total)"
        % (args.out, step, (time.time() - T_START) / 60, device_seconds / 60))
    # Do not wait for the data workers, but end them and torch.compile's worker pool (a
    # subprocess pool that its atexit hook, skipped by os._exit, would stop): left running,
    # they hold this process's stdout, and `train.py | tee log` never sees EOF. The first
    # training call (H200, torch 2.11) hung that way after its final save until the 600 s
    # device-call limit; which of the two held the pipe was not established, so write the
    # log to a file (`> $OUT/train.log 2>&1`) rather than through a pipe on the device.
    for p in multiprocessing.active_children():
        p.terminate()
    def _stop_compile_workers():
        with contextlib.suppress(Exception):
            from torch._inductor.async_compile import shutdown_compile_workers
            shutdown_compile_workers()
    stopper = threading.Thread(target=_stop_compile_workers, daemon=True)
    stopper.start()
    stopper.join(15)  # its shutdown may wait on the pool; never let it hold the exit
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _state(step, config, args, history, train_seconds, init_from):
    return {"step": step, "config": config, "args": vars(args), "eval_history": history,
            "train_seconds": train_seconds, "init_from": init_from}


if __name__ == "__main__":
    main()
