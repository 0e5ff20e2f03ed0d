#!/usr/bin/env python3
"""Full-attention anchor for the GPU prefill table (issue 6, docs/PERFORMANCE.md).

A decoder of Qwen3-8B's shape (36 layers, 32 query heads, 8 KV heads, head dim 128, hidden
4096, MLP 12288, vocabulary 151936, q/k RMSNorm, RoPE theta 1e6) with random bf16 weights,
prefilled in PyTorch with scaled_dot_product_attention (flash backend) one layer at a time
over the whole prompt, keeping every layer's K and V as a server would for decoding. It
reports prefill seconds, tokens/s and peak GPU memory per length and stops at the first
length that does not fit (the K/V cache alone is checked first, so a length that cannot fit
fails in seconds rather than after minutes of work).

    python3 tests/bench/qwen3_anchor.py --lengths 32768,131072,262144 [--max_seconds 120]

--max_seconds skips a length whose estimated time (quadratic attention + linear rest, fitted
on the lengths measured so far) exceeds it, so that the run fits a device call.
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F

LAYERS, HEADS, KV_HEADS, HEAD_DIM = 36, 32, 8, 128
HIDDEN, MLP, VOCAB, THETA, EPS = 4096, 12288, 151936, 1e6, 1e-6
ROWS = 65536  # rows per o_proj/MLP block


def rms_norm(x, weight):
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + EPS)).to(x.dtype) * weight


def rope_tables(length, device):
    inv = 1.0 / (THETA ** (torch.arange(0, HEAD_DIM, 2, device=device).float() / HEAD_DIM))
    angles = torch.outer(torch.arange(length, device=device).float(), inv)
    return angles.cos().to(torch.bfloat16), angles.sin().to(torch.bfloat16)


def apply_rope(x, cos, sin):  # x: [heads, L, 128], half-split rotation as in Qwen3
    a, b = x[..., : HEAD_DIM // 2], x[..., HEAD_DIM // 2:]
    return torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)


def make_weights(device):
    g = torch.Generator(device=device).manual_seed(0)

    def w(*shape):
        return (torch.randn(*shape, device=device, generator=g, dtype=torch.bfloat16)
                / math.sqrt(shape[-1]))

    layers = []
    for _ in range(LAYERS):
        layers.append(dict(
            qkv=w(HEADS * HEAD_DIM + 2 * KV_HEADS * HEAD_DIM, HIDDEN),
            o=w(HIDDEN, HEADS * HEAD_DIM),
            gate_up=w(2 * MLP, HIDDEN),
            down=w(HIDDEN, MLP),
            in_norm=torch.ones(HIDDEN, device=device, dtype=torch.bfloat16),
            post_norm=torch.ones(HIDDEN, device=device, dtype=torch.bfloat16),
            q_norm=torch.ones(HEAD_DIM, device=device, dtype=torch.bfloat16),
            k_norm=torch.ones(HEAD_DIM, device=device, dtype=torch.bfloat16)))
    return w(VOCAB, HIDDEN), layers, w(VOCAB, HIDDEN)


def attention(q, k, v):
    """Causal GQA attention with the flash kernel; K/V heads repeated if it lacks GQA."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        try:
            return F.scaled_dot_product_attention(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0),
                                                  is_causal=True, enable_gqa=True)[0]
        except RuntimeError:
            k = k.repeat_interleave(HEADS // KV_HEADS, dim=0)
            v = v.repeat_interleave(HEADS // KV_HEADS, dim=0)
            return F.scaled_dot_product_attention(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0),
                                                  is_causal=True)[0]


def prefill(tokens, embed, layers, lm_head, kv_cache):
    length = tokens.numel()
    cos, sin = rope_tables(length, tokens.device)
    x = embed[tokens]
    q_size, kv_size = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    for i, p in enumerate(layers):
        h = rms_norm(x, p["in_norm"])
        qkv = h @ p["qkv"].T
        q = qkv[:, :q_size].view(length, HEADS, HEAD_DIM).transpose(0, 1)
        k = qkv[:, q_size:q_size + kv_size].view(length, KV_HEADS, HEAD_DIM).transpose(0, 1)
        v = qkv[:, q_size + kv_size:].view(length, KV_HEADS, HEAD_DIM).transpose(0, 1)
        q = apply_rope(rms_norm(q, p["q_norm"]), cos, sin)
        k = apply_rope(rms_norm(k, p["k_norm"]), cos, sin)
        kv_cache[i][0].copy_(k)
        kv_cache[i][1].copy_(v)
        attn = attention(q, k, v)
        del q, k, v, qkv, h
        attn = attn.transpose(0, 1).reshape(length, q_size)
        for r in range(0, length, ROWS):  # o_proj and MLP by row blocks: bounded temporaries
            rows = slice(r, min(r + ROWS, length))
            x[rows] += attn[rows] @ p["o"].T
            gate_up = rms_norm(x[rows], p["post_norm"]) @ p["gate_up"].T
            x[rows] += (F.silu(gate_up[:, :MLP]) * gate_up[:, MLP:]) @ p["down"].T
            del gate_up
        del attn
    return rms_norm(x[-1:], layers[-1]["post_norm"]) @ lm_head.T


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="32768,131072,262144")
    parser.add_argument("--max_seconds", type=float, default=float("inf"))
    args = parser.parse_args()
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = True
    embed, layers, lm_head = make_weights(device)
    name = torch.cuda.get_device_name()
    print(f"anchor: Qwen3-8B shape, {LAYERS} layers, random bf16 weights, torch {torch.__version__}, {name}")
    print("| context | prefill s | prefill tok/s | peak GPU GiB |\n|---:|---:|---:|---:|", flush=True)
    measured = []  # (length, seconds)
    gen = torch.Generator(device=device).manual_seed(1)
    for length in [4096] + [int(x) for x in args.lengths.split(",")]:
        warmup = not measured and length == 4096
        kv_bytes = 2 * LAYERS * KV_HEADS * length * HEAD_DIM * 2
        if kv_bytes > torch.cuda.get_device_properties(device).total_memory:
            print(f"| {length} | out of memory: K/V alone {kv_bytes / 2**30:.0f} GiB | | |")
            break
        if measured:
            # seconds ~ a*L + b*L^2 through the origin, from the last two measured lengths
            (l1, s1), (l2, s2) = (measured[-2] if len(measured) > 1 else (0, 0.0)), measured[-1]
            if l1:
                b = (s2 / l2 - s1 / l1) / (l2 - l1)
                a = s2 / l2 - b * l2
                estimate = a * length + b * length * length
            else:
                estimate = s2 * (length / l2) ** 2
            if estimate > args.max_seconds:
                print(f"| {length} | not run: estimated {estimate:.0f} s > --max_seconds | | |")
                continue
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        try:
            kv_cache = [(torch.empty(KV_HEADS, length, HEAD_DIM, device=device, dtype=torch.bfloat16),
                         torch.empty(KV_HEADS, length, HEAD_DIM, device=device, dtype=torch.bfloat16))
                        for _ in range(LAYERS)]
            tokens = torch.randint(0, VOCAB, (length,), device=device, generator=gen)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            logits = prefill(tokens, embed, layers, lm_head, kv_cache)
            torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
        except torch.cuda.OutOfMemoryError:
            kv_gib = 2 * LAYERS * KV_HEADS * length * HEAD_DIM * 2 / 2**30
            print(f"| {length} | out of memory (K/V alone {kv_gib:.0f} GiB) | | |", flush=True)
            break
        finally:
            kv_cache = None
        assert torch.isfinite(logits.float()).all()
        if warmup:  # kernel loading and cuBLAS heuristics stay out of the table
            continue
        peak = torch.cuda.max_memory_allocated() / 2**30
        print(f"| {length} | {seconds:.2f} | {length / seconds:.0f} | {peak:.1f} |", flush=True)
        measured.append((length, seconds))


if __name__ == "__main__":
    main()
