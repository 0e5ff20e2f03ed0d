"""Self-tests of the SALA reference. From the repo root:
    /usr/bin/python3 -m unittest discover -s tools/reference -p 'test_*.py'
"""

import copy
import io
import json
import math
import os
import struct
import sys
import tempfile
import unittest
from contextlib import redirect_stdout

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run_reference  # noqa: E402
import safetensors_io as st  # noqa: E402
import sala_reference as sr  # noqa: E402

BASE_CONFIG = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "lightning_nh": 4,
    "lightning_nkv": 4,
    "lightning_head_dim": 16,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "vocab_size": 97,
    "scale_emb": 12,
    "scale_depth": 1.4,
    "dim_model_base": 16,
    "mixer_types": ["minicpm4", "lightning-attn", "lightning-attn", "minicpm4"],
    "sparse_config": {"kernel_size": 32, "kernel_stride": 16, "init_blocks": 1,
                      "block_size": 64, "window_size": 64, "topk": 4,
                      "dense_len": 8192, "use_nope": False},
    "tie_word_embeddings": False,
}

# The released checkpoint's sparse_config (spec §1.1).
RELEASE_SPARSE = {"kernel_size": 32, "kernel_stride": 16, "init_blocks": 1, "block_size": 64,
                  "window_size": 2048, "topk": 64, "use_nope": False, "dense_len": 8192}


def config(**over):
    d = copy.deepcopy(BASE_CONFIG)
    sc = over.pop("sparse", None)
    if sc:
        d["sparse_config"].update(sc)
    d.update(over)
    return d


def randn(gen, *shape, std=1.0):
    return torch.randn(*shape, generator=gen, dtype=torch.float32) * std


def rel_diff(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


# ----------------------------------------------------------------------------------------
# Independent oracles used only by the tests
# ----------------------------------------------------------------------------------------

def lightning_recurrent(q, k, v, slopes, scale, S0=None):
    """Token-by-token: S = gamma S + k v^T; o = (scale q)^T S. fp32 state."""
    H, T, d = q.shape
    S = torch.zeros(H, d, v.shape[-1]) if S0 is None else S0.clone()
    gam = torch.tensor([math.exp(-s) for s in slopes], dtype=torch.float32)
    out = torch.empty(H, T, v.shape[-1])
    for t in range(T):
        S = gam[:, None, None] * S + k[:, t, :, None] * v[:, t, None, :]
        out[:, t] = torch.einsum("hd,hde->he", q[:, t] * scale, S)
    return out, S


def lightning_chunked(q, k, v, slopes, scale, C=64, mlx_pitfall=False):
    """Chunked prefill (spec §3.6). With mlx_pitfall=True the last partial chunk is
    zero-padded to C and the state update uses the full-chunk decay factors."""
    H, T, d = q.shape
    out = torch.zeros(H, T, v.shape[-1])
    S = torch.zeros(H, d, v.shape[-1])
    for h in range(H):
        lam = slopes[h]
        Sh = torch.zeros(d, v.shape[-1])
        for c0 in range(0, T, C):
            qc, kc, vc = q[h, c0:c0 + C], k[h, c0:c0 + C], v[h, c0:c0 + C]
            c = qc.shape[0]
            if mlx_pitfall and c < C:
                pad = C - c
                qc = torch.cat([qc, torch.zeros(pad, d)])
                kc = torch.cat([kc, torch.zeros(pad, d)])
                vc = torch.cat([vc, torch.zeros(pad, v.shape[-1])])
                c_used = C
            else:
                c_used = c
            i = torch.arange(c_used, dtype=torch.float64)
            dist = i[:, None] - i[None, :]
            intra = torch.exp(-lam * dist.clamp(min=0)).masked_fill(dist < 0, 0).float()
            o = ((qc @ kc.t()) * intra) @ vc + torch.exp(-lam * (i + 1)).float()[:, None] * (qc @ Sh)
            out[h, c0:c0 + c] = (scale * o)[:c]
            w = torch.exp(-lam * (c_used - 1 - i)).float()
            Sh = math.exp(-lam * c_used) * Sh + (kc * w[:, None]).t() @ vc
        S[h] = Sh
    return out, S


def select_one(qp, keys, p, cfg, scale):
    """Literal, loop-based reading of MODEL-SEMANTICS "Sparse layers" for ONE query at
    absolute position p, in float64, decode style: keys [G, p+1, d] are the keys seen so
    far, qp [Hq, d]. Returns (blocks, scores): per group the sorted selected blocks and the
    scores of the candidate blocks 0..b_p (forced = +inf)."""
    qp, keys = qp.double(), keys.double()
    Hq = qp.shape[0]
    G = keys.shape[0]
    Hg = Hq // G
    B, k1, s1, k2, s2 = cfg.block_size, cfg.k1, cfg.s1, cfg.k2, cfg.s2
    bp = p // B
    # windows that lie completely in tokens 0..p
    vis1 = [j for j in range(p + 1) if s1 * j + k1 <= p + 1]
    vis2 = [j for j in range(p + 1) if s2 * j + k2 <= p + 1]
    blocks, all_scores = [], []
    for g in range(G):
        K1 = {j: keys[g, s1 * j: s1 * j + k1].mean(0) for j in vis1}
        K2 = {j: keys[g, s2 * j: s2 * j + k2].mean(0) for j in vis2}
        Sc = {j: 0.0 for j in vis1}
        for h in range(g * Hg, (g + 1) * Hg):
            if vis2:
                lse = torch.logsumexp(torch.stack([scale * (qp[h] @ K2[j]) for j in vis2]), 0).item()
            else:
                lse = -math.inf
            for j in vis1:
                x = scale * (qp[h] @ K1[j]).item() - lse
                Sc[j] += math.exp(x) if x < 700 else math.inf
        scores = []
        for b in range(bp + 1):
            if b < cfg.init_blocks or bp - cfg.local_blocks <= b <= bp:
                a = math.inf
            else:
                over = [Sc[j] for j in vis1
                        if s1 * j < B * b + B and s1 * j + k1 > B * b]  # window overlaps block
                a = max(over) if over else -math.inf
            scores.append(a)
        keep = min(cfg.topk_total, bp + 1)
        ranked = sorted(range(bp + 1), key=lambda b: (-scores[b], b))
        blocks.append(sorted(ranked[:keep]))
        all_scores.append(scores)
    return blocks, all_scores


def bruteforce_selection(q, k, cfg, scale):
    """{(p, g): sorted blocks}, {(p, g): candidate scores} for every position."""
    T, G = q.shape[1], k.shape[0]
    sets, scores = {}, {}
    for p in range(T):
        bl, sc = select_one(q[:, p], k[:, :p + 1], p, cfg, scale)
        for g in range(G):
            sets[(p, g)], scores[(p, g)] = bl[g], sc[g]
    return sets, scores


def oracle_forward(cfg, w, ids, sparse):
    """Token-by-token (decode-style) forward written directly from SALA-MODEL.md App. B /
    §3 with explicit per-element RoPE, a recurrent lightning state and a growing KV cache.
    sparse=False: dense attention in sparse layers; True: per-token select_one.
    Returns (logits [T, V], hidden [L][T, D])."""
    L = cfg.num_hidden_layers
    eps, alpha = cfg.rms_norm_eps, cfg.scale_depth / math.sqrt(L)
    W = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in w.items()}

    def norm(x, wt):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * wt

    H, dl = cfg.lightning_nh, cfg.lightning_head_dim
    Hq, G, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    gam = [math.exp(-s) for s in sr.lightning_slopes(H)]
    S = {l: torch.zeros(H, dl, dl) for l in cfg.lightning_layers}
    Kc = {l: [] for l in cfg.sparse_layers}
    Vc = {l: [] for l in cfg.sparse_layers}
    hidden = [[] for _ in range(L)]
    logits = []
    for p, tok in enumerate(ids):
        h = W["model.embed_tokens.weight"][int(tok)] * cfg.scale_emb
        for l in range(L):
            pre = "model.layers.%d." % l
            at = pre + "self_attn."
            a = norm(h, W[pre + "input_layernorm.weight"])
            if cfg.mixer_types[l] == "lightning-attn":
                q = (W[at + "q_proj.weight"] @ a).view(H, dl)
                k = (W[at + "k_proj.weight"] @ a).view(H, dl)
                v = (W[at + "v_proj.weight"] @ a).view(H, dl)
                q, k = norm(q, W[at + "q_norm.weight"]), norm(k, W[at + "k_norm.weight"])
                half = dl // 2
                qr, kr = q.clone(), k.clone()
                for i in range(half):
                    ang = p * cfg.rope_theta ** (-2.0 * i / dl)
                    c, s = math.cos(ang), math.sin(ang)
                    for x, y in ((q, qr), (k, kr)):
                        y[:, i] = x[:, i] * c - x[:, i + half] * s
                        y[:, i + half] = x[:, i + half] * c + x[:, i] * s
                o = torch.zeros(H, dl)
                for hh in range(H):
                    S[l][hh] = gam[hh] * S[l][hh] + torch.outer(kr[hh], v[hh])
                    o[hh] = (qr[hh] / math.sqrt(dl)) @ S[l][hh]
                o = norm(o.reshape(-1), W[at + "o_norm.weight"])
                o = o * torch.sigmoid(W[at + "z_proj.weight"] @ a)
                m = W[at + "o_proj.weight"] @ o
            else:
                q = (W[at + "q_proj.weight"] @ a).view(Hq, d)
                Kc[l].append((W[at + "k_proj.weight"] @ a).view(G, d))
                Vc[l].append((W[at + "v_proj.weight"] @ a).view(G, d))
                K, V = torch.stack(Kc[l], 1), torch.stack(Vc[l], 1)    # [G, p+1, d]
                allowed = [list(range(p + 1))] * G
                if sparse:
                    blocks, _ = select_one(q, K, p, cfg, 1.0 / math.sqrt(d))
                    allowed = [[t for t in range(p + 1) if t // cfg.block_size in blocks[g]]
                               for g in range(G)]
                o = torch.zeros(Hq, d)
                for hh in range(Hq):
                    g = hh // (Hq // G)
                    idx = torch.tensor(allowed[g])
                    wts = torch.softmax((K[g, idx] @ q[hh]) / math.sqrt(d), 0)
                    o[hh] = wts @ V[g, idx]
                o = o.reshape(-1) * torch.sigmoid(W[at + "o_gate.weight"] @ a)
                m = W[at + "o_proj.weight"] @ o
            h = h + alpha * m
            b = norm(h, W[pre + "post_attention_layernorm.weight"])
            mlp = W[pre + "mlp.down_proj.weight"] @ (
                torch.nn.functional.silu(W[pre + "mlp.gate_proj.weight"] @ b) *
                (W[pre + "mlp.up_proj.weight"] @ b))
            h = h + alpha * mlp
            hidden[l].append(h)
        y = norm(h, W["model.norm.weight"]) / (cfg.hidden_size / cfg.dim_model_base)
        logits.append(W["lm_head.weight"] @ y)
    return torch.stack(logits), [torch.stack(x) for x in hidden]


def ids_to_sets(ids):
    T, G, _ = ids.shape
    return {(p, g): [int(x) for x in ids[p, g] if x >= 0] for p in range(T) for g in range(G)}


# ----------------------------------------------------------------------------------------
# (a), (b) Lightning attention
# ----------------------------------------------------------------------------------------

class LightningTest(unittest.TestCase):
    def setUp(self):
        g = torch.Generator().manual_seed(11)
        self.H, self.T, self.d = 4, 202, 8   # 202 = 3 full chunks of 64 + a partial of 10
        self.q = randn(g, self.H, self.T, self.d)
        self.k = randn(g, self.H, self.T, self.d)
        self.v = randn(g, self.H, self.T, self.d)
        s32 = sr.lightning_slopes(32)
        self.slopes = [s32[0], s32[10], s32[20], s32[31]]   # fast .. slow decay
        self.scale = 1.0 / math.sqrt(self.d)

    def test_slopes_match_spec(self):
        s = sr.alibi_slopes(32)
        for h in range(32):
            self.assertAlmostEqual(s[h], 2.0 ** (-(h + 1) / 4), places=14)
        self.assertAlmostEqual(math.exp(-s[0]), 0.43132370, places=7)
        self.assertAlmostEqual(math.exp(-s[31]), 0.99610137, places=7)
        self.assertEqual(sr.alibi_slopes(6), [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3])

    def test_explicit_sum_equals_recurrence(self):
        o_exp = sr.lightning_attention(self.q, self.k, self.v, self.slopes, self.scale)
        S_exp = sr.lightning_final_state(self.k, self.v, self.slopes)
        o_rec, S_rec = lightning_recurrent(self.q, self.k, self.v, self.slopes, self.scale)
        self.assertLess(rel_diff(o_exp, o_rec), 1e-5)
        self.assertLess(rel_diff(S_exp, S_rec), 1e-5)
        # continuing from the final state equals the explicit sum over the longer sequence
        g = torch.Generator().manual_seed(5)
        q2, k2, v2 = (randn(g, self.H, 3, self.d) for _ in range(3))
        o_more, _ = lightning_recurrent(q2, k2, v2, self.slopes, self.scale, S0=S_exp)
        o_all = sr.lightning_attention(torch.cat([self.q, q2], 1), torch.cat([self.k, k2], 1),
                                       torch.cat([self.v, v2], 1), self.slopes, self.scale)
        self.assertLess(rel_diff(o_more, o_all[:, -3:]), 1e-5)

    def test_chunked_true_length_matches_and_mlx_pitfall_detected(self):
        o_exp = sr.lightning_attention(self.q, self.k, self.v, self.slopes, self.scale)
        S_exp = sr.lightning_final_state(self.k, self.v, self.slopes)
        o_ok, S_ok = lightning_chunked(self.q, self.k, self.v, self.slopes, self.scale)
        self.assertLess(rel_diff(o_ok, o_exp), 1e-5)
        self.assertLess(rel_diff(S_ok, S_exp), 1e-5)
        o_bad, S_bad = lightning_chunked(self.q, self.k, self.v, self.slopes, self.scale,
                                         mlx_pitfall=True)
        # The prefill outputs are unaffected (padding sits after the real tokens) ...
        self.assertLess(rel_diff(o_bad, o_exp), 1e-5)
        # ... but the carried state is off by gamma^(64 - c), c = 10, in every head.
        for h in range(self.H):
            self.assertGreater(rel_diff(S_bad[h], S_exp[h]), 1e-2, "head %d" % h)
            factor = math.exp(-self.slopes[h] * (64 - self.T % 64))
            self.assertLess(float((S_bad[h] - factor * S_exp[h]).abs().max()),
                            1e-5 * float(S_exp[h].abs().max()) + 1e-30)
        # and the next decoded token sees it.
        g = torch.Generator().manual_seed(6)
        q2, k2, v2 = (randn(g, self.H, 1, self.d) for _ in range(3))
        o_next_ok, _ = lightning_recurrent(q2, k2, v2, self.slopes, self.scale, S0=S_exp)
        o_next_bad, _ = lightning_recurrent(q2, k2, v2, self.slopes, self.scale, S0=S_bad)
        self.assertGreater(rel_diff(o_next_bad[-1], o_next_ok[-1]), 1e-3)


# ----------------------------------------------------------------------------------------
# (c), (d) Sparse attention
# ----------------------------------------------------------------------------------------

class SparseTest(unittest.TestCase):
    def setUp(self):
        self.cfg = sr.SalaConfig(config())   # B 64, k1 32/16, window 64, topk 4 -> total 5
        g = torch.Generator().manual_seed(3)
        self.T, self.d = 1024, 16
        self.q = randn(g, 4, self.T, self.d)
        self.k = randn(g, 2, self.T, self.d)
        self.v = randn(g, 2, self.T, self.d)
        self.scale = 1.0 / math.sqrt(self.d)

    def forced_only_mask(self):
        cfg, T = self.cfg, self.T
        nb = (T + cfg.block_size - 1) // cfg.block_size
        b = torch.arange(nb)
        bp = torch.arange(T) // cfg.block_size
        m = (b[None] <= bp[:, None]) & ((b[None] < cfg.init_blocks) |
                                        (b[None] >= bp[:, None] - cfg.local_blocks))
        return m[None].expand(2, T, nb).clone()

    def test_selection_properties(self):
        cfg = self.cfg
        mask = sr.sparse_select(self.q, self.k, cfg, self.scale)
        ids = sr.selection_mask_to_ids(mask, cfg.topk_total)
        self.assertEqual(tuple(ids.shape), (self.T, 2, cfg.topk_total))
        self.assertTrue(torch.equal(sr.selection_ids_to_mask(ids, mask.shape[-1]), mask))
        for p in range(self.T):
            bp = p // cfg.block_size
            for g in range(2):
                row = [int(x) for x in ids[p, g]]
                sel = [x for x in row if x >= 0]
                self.assertEqual(row[len(sel):], [-1] * (len(row) - len(sel)))
                self.assertEqual(sel, sorted(set(sel)))
                self.assertEqual(len(sel), min(cfg.topk_total, bp + 1))
                self.assertTrue(all(0 <= x <= bp for x in sel))
                for f in [0] + list(range(max(0, bp - cfg.local_blocks), bp + 1)):
                    self.assertIn(f, sel)

    def test_stage1_matches_loop_bruteforce(self):
        # Small blocks so a short sequence has many candidates: B 16, k1 8/4 (k2 32/16),
        # window 16, topk 4 -> topk_total 5, 2 dynamic slots.
        cfg = sr.SalaConfig(config(sparse={"block_size": 16, "kernel_size": 8,
                                           "kernel_stride": 4, "window_size": 16, "topk": 4}))
        g = torch.Generator().manual_seed(8)
        T = 300
        q, k = randn(g, 4, T, 8), randn(g, 2, T, 8)
        Sc, n1 = sr.stage1_group_scores(q, k, cfg, 0.35)
        A = sr.pool_block_scores(Sc, n1, T, cfg)
        ids = sr.selection_mask_to_ids(sr.select_blocks(A, cfg), cfg.topk_total)
        for p in range(T):     # K1[j] visible iff its window lies in tokens 0..p
            for j in range(n1):
                self.assertEqual(bool((Sc[:, p, j] > -math.inf).all()), 4 * j + 8 <= p + 1)
        want, want_scores = bruteforce_selection(q, k, cfg, 0.35)
        self.assertEqual(ids_to_sets(ids), want)
        compared = 0
        for (p, gg), scores in want_scores.items():
            for b, s in enumerate(scores):
                if math.isfinite(s):
                    self.assertAlmostEqual(float(A[gg, p, b]) / s, 1.0, places=4)
                    compared += 1
                elif s == -math.inf:
                    self.assertEqual(float(A[gg, p, b]), -math.inf)
        self.assertGreater(compared, 2000)
        dynamic = sum(1 for (p, _), s in want.items()
                      if set(s) - {0} - set(range(p // 16 - 1, p // 16 + 1)))
        self.assertGreater(dynamic, 200)   # the dynamic slots are actually exercised

    def test_sparse_differs_from_dense_and_from_window_only(self):
        cfg = self.cfg
        dense = sr.dense_causal_attention(self.q, self.k, self.v, self.scale)
        mask = sr.sparse_select(self.q, self.k, cfg, self.scale)
        sparse = sr.block_sparse_attention(self.q, self.k, self.v, mask, cfg.block_size, self.scale)
        fit = cfg.topk_total * cfg.block_size      # positions < 320 see every causal block
        self.assertLess(float((sparse[:, :fit] - dense[:, :fit]).abs().max()), 1e-5)
        self.assertGreater(float((sparse[:, fit:] - dense[:, fit:]).abs().max()), 1e-2)
        local = self.forced_only_mask()
        self.assertFalse(torch.equal(local, mask))
        win = sr.block_sparse_attention(self.q, self.k, self.v, local, cfg.block_size, self.scale)
        self.assertGreater(float((win[:, fit:] - sparse[:, fit:]).abs().max()), 1e-2)

    def test_needle_block_is_selected(self):
        cfg = self.cfg
        g = torch.Generator().manual_seed(4)
        u = randn(g, self.d)
        k = randn(g, 2, self.T, self.d, std=0.3)
        q = randn(g, 4, self.T, self.d, std=0.3)
        k[0, 7 * 64:8 * 64] += 2.0 * u         # needle: block 7 of kv-group 0
        q[0:2, 960:] += 2.0 * u                # queries of group 0 in the last block look for it
        ids = sr.selection_mask_to_ids(sr.sparse_select(q, k, cfg, self.scale), cfg.topk_total)
        for p in range(960, self.T):
            self.assertIn(7, ids[p, 0].tolist())
        self.assertFalse(self.forced_only_mask()[0, 1000, 7])

    def test_all_blocks_fit_equals_dense(self):
        cfg = self.cfg
        T = cfg.topk_total * cfg.block_size      # 320 tokens = 5 blocks = topk_total
        q, k, v = self.q[:, :T], self.k[:, :T], self.v[:, :T]
        mask = sr.sparse_select(q, k, cfg, self.scale)
        self.assertTrue(bool(mask[:, torch.arange(T), torch.arange(T) // 64].all()))
        self.assertTrue(bool((mask.sum(-1) == (torch.arange(T) // 64 + 1)[None]).all()))
        sparse = sr.block_sparse_attention(q, k, v, mask, cfg.block_size, self.scale)
        dense = sr.dense_causal_attention(q, k, v, self.scale)
        self.assertLess(float((sparse - dense).abs().max()), 1e-6)

    def test_ties_go_to_lower_index(self):
        cfg = self.cfg
        T = 1024
        A = torch.zeros(1, T, 16)
        ids = sr.selection_mask_to_ids(sr.select_blocks(A, cfg), cfg.topk_total)
        self.assertEqual(ids[1023, 0].tolist(), [0, 1, 2, 14, 15])
        A[0, :, 9] = 1.0
        ids = sr.selection_mask_to_ids(sr.select_blocks(A, cfg), cfg.topk_total)
        self.assertEqual(ids[1023, 0].tolist(), [0, 1, 9, 14, 15])
        A[0, :, 3] = math.inf   # an infinite score ties with the forced blocks, still lower
        ids = sr.selection_mask_to_ids(sr.select_blocks(A, cfg), cfg.topk_total)
        self.assertEqual(ids[1023, 0].tolist(), [0, 3, 9, 14, 15])


# ----------------------------------------------------------------------------------------
# Whole model
# ----------------------------------------------------------------------------------------

class ModelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cfg = sr.SalaConfig(config())
        cls.weights = sr.random_weights(cls.cfg, seed=1, std=0.15)
        cls.model = sr.SalaModel(cls.cfg, cls.weights)
        cls.ids = np.random.default_rng(2).integers(0, 97, size=1024)
        cls.sparse = cls.model.forward(cls.ids, mode="always_sparse")

    def test_shapes_and_flags(self):
        r = self.sparse
        self.assertEqual(tuple(r.logits.shape), (1024, 97))
        self.assertEqual(len(r.hidden_states), 4)
        self.assertEqual(sorted(r.selected), [0, 3])
        self.assertEqual(sorted(r.lightning_states), [1, 2])
        self.assertEqual(tuple(r.lightning_states[1].shape), (4, 16, 16))
        self.assertEqual(r.dense, {0: False, 3: False})
        self.assertTrue(bool((r.selected[0][-1] >= 0).all()))
        # logits are the head applied to the last hidden state
        y = sr.rms_norm(r.hidden_states[-1], torch.from_numpy(self.weights["model.norm.weight"]), 1e-6)
        logits = (y / 4.0) @ torch.from_numpy(self.weights["lm_head.weight"]).t()
        self.assertLess(rel_diff(logits, r.logits), 1e-6)

    def test_hf_mode_threshold(self):
        hf = self.model.forward(self.ids, mode="hf")          # 1024 < dense_len 8192 -> dense
        self.assertEqual(hf.dense, {0: True, 3: True})
        self.assertTrue(bool((hf.selected[0] == -1).all()))
        self.assertGreater(float((hf.logits - self.sparse.logits).abs().max()), 1e-4)
        low = sr.SalaModel(sr.SalaConfig(config(sparse={"dense_len": 1024})), self.weights)
        hf2 = low.forward(self.ids, mode="hf")                # 1024 >= dense_len -> sparse
        self.assertEqual(hf2.dense, {0: False, 3: False})
        self.assertTrue(torch.equal(hf2.logits, self.sparse.logits))
        self.assertTrue(torch.equal(hf2.selected[3], self.sparse.selected[3]))

    def test_short_sequence_sparse_equals_dense(self):
        ids = self.ids[:320]
        a = self.model.forward(ids, mode="always_sparse")
        b = self.model.forward(ids, mode="hf")
        self.assertLess(rel_diff(a.logits, b.logits), 1e-5)
        # prefix consistency: positions of a shorter prefill equal the long run's positions
        self.assertLess(rel_diff(a.logits, self.sparse.logits[:320]), 1e-5)

    def test_lightning_state_matches_recurrence(self):
        # rebuild layer 1's input from hidden_0 and compare the state with a recurrence
        a = sr.rms_norm(self.sparse.hidden_states[0],
                        torch.from_numpy(self.weights["model.layers.1.input_layernorm.weight"]), 1e-6)
        q, k, v = self.model.lightning_qkv(1, a)
        _, S = lightning_recurrent(q, k, v, self.model.slopes, 0.25)
        self.assertLess(rel_diff(self.sparse.lightning_states[1], S), 1e-5)

    def test_matches_token_by_token_oracle_dense(self):
        T = 96
        logits, hidden = oracle_forward(self.cfg, self.weights, self.ids[:T], sparse=False)
        r = self.model.forward(self.ids[:T], mode="hf")
        self.assertLess(rel_diff(r.logits, logits), 1e-4)
        for l in range(4):
            self.assertLess(rel_diff(r.hidden_states[l], hidden[l]), 1e-4)

    def test_matches_token_by_token_oracle_sparse(self):
        # decode-style, per-token selection == one-shot prefill (always_sparse)
        cfg = sr.SalaConfig(config(sparse={"block_size": 16, "kernel_size": 8,
                                           "kernel_stride": 4, "window_size": 16, "topk": 4}))
        model = sr.SalaModel(cfg, self.weights)
        T = 160
        logits, hidden = oracle_forward(cfg, self.weights, self.ids[:T], sparse=True)
        r = model.forward(self.ids[:T], mode="always_sparse")
        self.assertLess(rel_diff(r.logits, logits), 1e-4)
        for l in range(4):
            self.assertLess(rel_diff(r.hidden_states[l], hidden[l]), 1e-4)
        dense = model.forward(self.ids[:T], mode="hf")
        self.assertGreater(rel_diff(dense.logits, logits), 1e-3)

    def test_weight_checks(self):
        w = dict(self.weights)
        w["model.layers.1.self_attn.rotary_emb.inv_freq"] = np.zeros(8, np.float32)
        sr.SalaModel(self.cfg, w)                              # ignored
        bad = dict(self.weights)
        del bad["model.layers.3.self_attn.o_gate.weight"]
        with self.assertRaises(ValueError):
            sr.SalaModel(self.cfg, bad)
        bad = dict(self.weights)
        bad["model.layers.1.self_attn.q_norm.weight"] = np.ones(64, np.float32)
        with self.assertRaises(ValueError):
            sr.SalaModel(self.cfg, bad)
        tied = sr.SalaConfig(config(tie_word_embeddings=True))
        tw = dict(self.weights)
        del tw["lm_head.weight"]
        r = sr.SalaModel(tied, tw).forward(self.ids[:40])
        self.assertEqual(tuple(r.logits.shape), (40, 97))
        with self.assertRaises(ValueError):
            self.model.forward(self.ids[:10], mode="dense")
        with self.assertRaises(ValueError):
            self.model.forward([97])


class ConfigTest(unittest.TestCase):
    def test_release_config_ok(self):
        d = config(sparse=RELEASE_SPARSE)
        cfg = sr.SalaConfig(d)
        self.assertEqual(cfg.topk_total, 96)
        self.assertEqual((cfg.k2, cfg.s2), (128, 64))
        self.assertAlmostEqual(sr.SalaConfig(config(num_hidden_layers=32, mixer_types=["minicpm4"] * 32))
                               .residual_scale, 0.24748737341, places=10)

    def test_defaults(self):
        d = config()
        for key in ("head_dim", "lightning_nh", "lightning_nkv", "lightning_head_dim"):
            del d[key]
        cfg = sr.SalaConfig(d)
        self.assertEqual((cfg.head_dim, cfg.lightning_nh, cfg.lightning_head_dim), (16, 4, 16))

    def test_rejections(self):
        bad = [
            config(sparse={"kernel_size": 24}),                         # k1 % s1
            config(sparse={"block_size": 40, "window_size": 80}),        # B % s1
            config(sparse={"block_size": 16, "window_size": 16}),        # K2 visibility
            config(sparse={"topk": 1}),                                  # no room for forced
            config(mixer_types=["minicpm4"] * 3),
            config(mixer_types=["minicpm4", "mamba", "minicpm4", "minicpm4"]),
            config(num_key_value_heads=3),
            config(lightning_nkv=2),
            config(attn_use_rope=True),
        ]
        for d in bad:
            with self.assertRaises(ValueError):
                sr.SalaConfig(d)
        try:
            sr.SalaConfig(config(sparse={"topk": 1}))
        except ValueError as e:
            self.assertIn("topk_total", str(e))


# ----------------------------------------------------------------------------------------
# (e) safetensors
# ----------------------------------------------------------------------------------------

class SafetensorsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        rng = np.random.default_rng(0)
        self.t = {
            "a.weight": rng.standard_normal((33, 7)).astype(np.float32),
            "b.bias": rng.standard_normal(5).astype(np.float32),
            "c.big": rng.standard_normal((64, 64)).astype(np.float32),
            "d.scalar": np.array(3.5, dtype=np.float32),
            "e.empty": np.zeros((0, 4), dtype=np.float32),
        }

    def tearDown(self):
        self.tmp.cleanup()

    def test_f32_f16_roundtrip(self):
        p = os.path.join(self.dir, "x.safetensors")
        st.save_file(dict(self.t, ids=np.arange(6, dtype=np.int32)), p, metadata={"format": "pt"})
        f = st.SafetensorsFile(p)
        self.assertEqual(f.metadata, {"format": "pt"})
        with open(p, "rb") as fh:
            self.assertEqual((8 + struct.unpack("<Q", fh.read(8))[0]) % 8, 0)
        for k, v in self.t.items():
            self.assertEqual(f.dtype(k), "F32")
            np.testing.assert_array_equal(f.get(k), v)
        np.testing.assert_array_equal(f.get("ids"), np.arange(6))
        st.save_file(self.t, p, dtype="F16")
        back = st.load_file(p)
        for k, v in self.t.items():
            np.testing.assert_array_equal(back[k], v.astype(np.float16))

    def test_bf16_roundtrip_and_rounding(self):
        p = os.path.join(self.dir, "x.safetensors")
        st.save_file(self.t, p, dtype="BF16")
        f = st.SafetensorsFile(p)
        for k, v in self.t.items():
            self.assertEqual(f.dtype(k), "BF16")
            want = torch.from_numpy(v).to(torch.bfloat16).float().numpy()   # RNE in torch
            np.testing.assert_array_equal(f.get(k), want)
            np.testing.assert_array_equal(f.get(k, bf16="raw"), st.float32_to_bf16_bits(v))
        # values representable in bf16 survive exactly, including the specials
        special = np.array([0.0, -0.0, 1.0, -2.5, np.inf, -np.inf, 3.3895314e38, 1e-40],
                           dtype=np.float32)
        exact = st.bf16_bits_to_float32(st.float32_to_bf16_bits(special))
        st.save_file({"s": exact}, p, dtype="BF16")
        np.testing.assert_array_equal(st.load_file(p)["s"], exact)
        torch_ref = torch.from_numpy(special).to(torch.bfloat16).float().numpy()
        np.testing.assert_array_equal(exact, torch_ref)
        self.assertTrue(np.isnan(st.bf16_bits_to_float32(
            st.float32_to_bf16_bits(np.array([np.nan], np.float32))))[0])
        # a torch bf16 tensor is written as BF16 with no dtype argument
        tb = torch.from_numpy(self.t["a.weight"]).to(torch.bfloat16)
        st.save_file({"tb": tb}, p)
        self.assertEqual(st.SafetensorsFile(p).dtype("tb"), "BF16")
        np.testing.assert_array_equal(st.load_file(p)["tb"], tb.float().numpy())

    def test_sharded_roundtrip(self):
        out = os.path.join(self.dir, "ck")
        files = st.save_checkpoint(self.t, out, dtype="BF16", max_shard_bytes=2000)
        self.assertIn(st.INDEX_NAME, files)
        self.assertGreater(len(files), 3)
        with open(os.path.join(out, st.INDEX_NAME)) as f:
            index = json.load(f)
        self.assertEqual(set(index["weight_map"]), set(self.t))
        ck = st.Checkpoint(out)
        self.assertEqual(set(ck.keys()), set(self.t))
        for k, v in self.t.items():
            np.testing.assert_array_equal(ck.get(k), torch.from_numpy(v).to(torch.bfloat16).float().numpy())
            self.assertEqual(ck.shape(k), v.shape)
        single = os.path.join(self.dir, "one")
        self.assertEqual(st.save_checkpoint(self.t, single), [st.SINGLE_NAME])
        back = st.load_checkpoint(single)
        for k, v in self.t.items():
            np.testing.assert_array_equal(back[k], v)

    def test_reads_hand_made_file(self):
        # Built byte by byte from the format description, independent of the writer.
        data = struct.pack("<2f", 1.5, -2.0) + struct.pack("<H", 0x3FC0) + struct.pack("<3h", 1, -2, 3)
        header = {"__metadata__": {"k": "v"},
                  "x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                  "y": {"dtype": "BF16", "shape": [1, 1], "data_offsets": [8, 10]},
                  "z": {"dtype": "I16", "shape": [3], "data_offsets": [10, 16]}}
        h = json.dumps(header).encode()
        p = os.path.join(self.dir, "hand.safetensors")
        with open(p, "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h + data)
        got = st.load_file(p)
        np.testing.assert_array_equal(got["x"], [1.5, -2.0])
        np.testing.assert_array_equal(got["y"], [[1.5]])
        np.testing.assert_array_equal(got["z"], [1, -2, 3])
        header["x"]["data_offsets"] = [0, 12]
        h = json.dumps(header).encode()
        with open(p, "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h + data)
        with self.assertRaises(ValueError):
            st.SafetensorsFile(p)


# ----------------------------------------------------------------------------------------
# CLI end to end
# ----------------------------------------------------------------------------------------

class CliTest(unittest.TestCase):
    def test_random_checkpoint_and_run(self):
        with tempfile.TemporaryDirectory() as tmp:
            cfg_path = os.path.join(tmp, "config.in.json")
            with open(cfg_path, "w") as f:
                json.dump(config(), f)
            ck, tok, out = (os.path.join(tmp, n) for n in ("ck", "tok.bin", "out"))
            with redirect_stdout(io.StringIO()):
                run_reference.main(["--random-checkpoint", ck, "--config-json", cfg_path,
                                    "--seed", "7", "--dtype", "bf16", "--max-shard-bytes", "50000"])
                run_reference.main(["--random-tokens", tok, "--num-tokens", "400",
                                    "--config-json", cfg_path, "--seed", "3"])
                run_reference.main(["--model", ck, "--tokens", tok, "--out", out,
                                    "--mode", "always_sparse"])
            self.assertTrue(os.path.exists(os.path.join(ck, st.INDEX_NAME)))
            with open(os.path.join(out, "manifest.json")) as f:
                m = json.load(f)
            self.assertEqual((m["num_tokens"], m["vocab_size"], m["hidden_size"], m["num_layers"]),
                             (400, 97, 64, 4))
            self.assertEqual((m["sparse_layers"], m["topk_total"], m["num_kv_heads"]), ([0, 3], 5, 2))
            for name, e in m["files"].items():
                n = int(np.prod(e["shape"]))
                self.assertEqual(os.path.getsize(os.path.join(out, name)), 4 * n, name)
            self.assertEqual(sorted(m["files"]), sorted(
                ["logits.f32", "hidden_0.f32", "hidden_1.f32", "hidden_2.f32", "hidden_3.f32",
                 "selected_0.i32", "selected_3.i32", "lightning_state_1.f32",
                 "lightning_state_2.f32"]))
            model = sr.SalaModel.from_pretrained(ck)
            ids = np.fromfile(tok, dtype="<i4")
            r = model.forward(ids, mode="always_sparse")
            logits = np.fromfile(os.path.join(out, "logits.f32"), dtype="<f4").reshape(400, 97)
            np.testing.assert_array_equal(logits, r.logits.numpy())
            sel = np.fromfile(os.path.join(out, "selected_3.i32"), dtype="<i4").reshape(400, 2, 5)
            np.testing.assert_array_equal(sel, r.selected[3].numpy())
            self.assertEqual(list(sel[399, 0]), sorted(sel[399, 0]))


if __name__ == "__main__":
    unittest.main()
