"""The training model (tools/train/model.py, CPU "masked" path) computes the same function
as the independent reference (tools/reference/sala_reference.py), fp32, always_sparse.

    /usr/bin/python3 -m unittest discover -s tools/train -p 'test_*.py'

Runs on CPU in well under a minute (torch 1.13 or 2.x).
"""

import json
import math
import os
import sys
import tempfile
import unittest

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import model as M  # noqa: E402
import sala_reference as R  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


def tiny_config(block=16, kernel=8, stride=4, window=32, topk=4, layers="SLLS", vocab=300,
                hidden=64, heads=4, kv=2, head_dim=16, lheads=4, lhead_dim=16):
    mix = [M.SPARSE if c == "S" else M.LIGHTNING for c in layers]
    return {
        "hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": len(mix),
        "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": head_dim,
        "lightning_nh": lheads, "lightning_nkv": lheads, "lightning_head_dim": lhead_dim,
        "vocab_size": vocab, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "scale_emb": 12, "scale_depth": 1.4, "dim_model_base": hidden // 2,
        "tie_word_embeddings": False, "mixer_types": mix,
        "sparse_config": {"kernel_size": kernel, "kernel_stride": stride, "init_blocks": 1,
                          "block_size": block, "window_size": window, "topk": topk,
                          "use_nope": False, "dense_len": 8192},
        "lightning_use_rope": True, "attn_use_rope": False, "qk_norm": True,
        "use_output_norm": True, "use_output_gate": True, "attn_use_output_gate": True,
        "attention_bias": False, "hidden_act": "silu", "lightning_scale": "1/sqrt(d)",
    }


def random_weights(cfg_dict, seed, std):
    rcfg = R.SalaConfig(cfg_dict)
    return {k: torch.from_numpy(v) for k, v in R.random_weights(rcfg, seed, std=std).items()}


def build_pair(cfg_dict, seed=0, std=0.08):
    w = random_weights(cfg_dict, seed, std)
    ref = R.SalaModel(R.SalaConfig(cfg_dict), w)
    tm = M.SalaForCausalLM(cfg_dict, attn_impl="masked")
    missing, unexpected = tm.load_state_dict(w, strict=True), None
    del missing, unexpected
    tm.eval()
    return ref, tm, w


def rel_err(a, b):
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


class LightningTest(unittest.TestCase):
    def test_chunked_equals_explicit_sum(self):
        g = torch.Generator().manual_seed(1)
        H, T, d = 4, 203, 16   # T not a multiple of the chunk
        q = torch.randn(H, T, d, generator=g)
        k = torch.randn(H, T, d, generator=g)
        v = torch.randn(H, T, d, generator=g)
        slopes = M.lightning_slopes(H)
        self.assertEqual(slopes, R.lightning_slopes(H))
        ref = R.lightning_attention(q, k, v, slopes, 0.25)
        for chunk in (64, 16, 7):
            out = M.lightning_chunked(q[None], k[None], v[None], slopes, 0.25, chunk=chunk)[0]
            self.assertLess(rel_err(out, ref), 1e-5, chunk)

    def test_slopes_non_power_of_two(self):
        self.assertEqual(M.lightning_slopes(6), R.lightning_slopes(6))
        self.assertAlmostEqual(M.alibi_slopes(32)[0], 2 ** -0.25)


class SelectionTest(unittest.TestCase):
    def _check(self, cfg_dict, T, seed, zero_keys=False):
        rcfg = R.SalaConfig(cfg_dict)
        mcfg = M.Config(cfg_dict)
        g = torch.Generator().manual_seed(seed)
        Hq, G, d = rcfg.num_attention_heads, rcfg.num_key_value_heads, rcfg.head_dim
        q = torch.randn(Hq, T, d, generator=g)
        k = torch.zeros(G, T, d) if zero_keys else torch.randn(G, T, d, generator=g)
        scale = 1 / math.sqrt(d)
        want = R.sparse_select(q, k, rcfg, scale)                        # [G, T, nb]
        got = M.select_blocks(q[None], k[None], mcfg, scale, q_chunk=97)[0]
        self.assertEqual(got.shape, want.shape)
        nb = want.shape[-1]
        self.assertGreater(nb, rcfg.topk_total * 3, "selection must choose among many blocks")
        mismatch = int((got != want).any(dim=-1).sum())
        self.assertEqual(mismatch, 0)
        # the selection really selects: late queries read topk_total blocks out of many
        counts = got.sum(dim=-1)
        self.assertEqual(int(counts[:, -1].max()), rcfg.topk_total)

    def test_selection_equals_reference_small_blocks(self):
        self._check(tiny_config(), T=700, seed=3)

    def test_selection_equals_reference_sala_geometry(self):
        # block 64, K1 32/16, K2 128/64 as in the shipped config
        self._check(tiny_config(block=64, kernel=32, stride=16, window=128, topk=4), T=1600,
                    seed=4)

    def test_ties_go_to_lower_index(self):
        self._check(tiny_config(), T=500, seed=5, zero_keys=True)


class ModelParityTest(unittest.TestCase):
    def _parity(self, cfg_dict, T, seed, std=0.08, expect_sparse=True):
        ref, tm, _ = build_pair(cfg_dict, seed=seed, std=std)
        rng = np.random.default_rng(seed)
        ids = rng.integers(0, cfg_dict["vocab_size"], size=T)
        r = ref.forward(ids, mode="always_sparse")
        aux = []
        with torch.no_grad():
            logits, hs = tm(torch.as_tensor(ids)[None], return_hidden=True, aux=aux)
        self.assertLess(rel_err(logits[0], r.logits), 1e-4)
        for layer, (a, b) in enumerate(zip(hs, r.hidden_states)):
            self.assertLess(rel_err(a[0], b), 1e-4, "hidden state of layer %d" % layer)
        # the sparse layers selected exactly the reference's blocks, and really chose
        sparse_layers = [i for i, t in enumerate(cfg_dict["mixer_types"]) if t == M.SPARSE]
        if not expect_sparse:  # dense fast path: the reference selected every causal block
            self.assertEqual(aux, [])
            for layer in sparse_layers:
                blocks = (torch.arange(T) // cfg_dict["sparse_config"]["block_size"])
                n_sel = (r.selected[layer] >= 0).sum(dim=-1)              # [T, G]
                self.assertTrue(torch.equal(n_sel, (blocks + 1)[:, None].expand_as(n_sel).int()))
            return logits, r, None
        self.assertEqual(len(aux), len(sparse_layers))
        nb = None
        for sel, layer in zip(aux, sparse_layers):
            ids_ref = r.selected[layer]                                   # [T, G, K]
            nb = sel.shape[-1]
            mask_ref = R.selection_ids_to_mask(ids_ref, nb)
            self.assertTrue(torch.equal(sel[0], mask_ref), "selection of layer %d" % layer)
        return logits, r, nb

    def test_parity_small_blocks(self):
        cfg = tiny_config()
        _, r, nb = self._parity(cfg, T=640, seed=11)
        self.assertGreaterEqual(nb, 40)

    def test_parity_sala_geometry(self):
        cfg = tiny_config(block=64, kernel=32, stride=16, window=128, topk=4, layers="SLLSLS")
        self._parity(cfg, T=1100, seed=12)

    def test_parity_dense_short(self):
        # T <= topk_total * block: the dense fast path must equal the sparse rules
        cfg = tiny_config()
        self._parity(cfg, T=90, seed=13, expect_sparse=False)

    def test_sparse_differs_from_dense(self):
        """Guard against a test that would pass with dense attention everywhere."""
        cfg = tiny_config()
        ref, tm, _ = build_pair(cfg, seed=14)
        ids = np.random.default_rng(14).integers(0, cfg["vocab_size"], size=500)
        sparse = ref.forward(ids, mode="always_sparse").logits
        dense = ref.forward(ids, mode="hf").logits
        self.assertGreater(rel_err(sparse, dense), 1e-3)

    def test_state_dict_names_match_checkpoint(self):
        cfg = tiny_config()
        tm = M.SalaForCausalLM(cfg)
        want = R.expected_shapes(R.SalaConfig(cfg))
        got = {k: tuple(v.shape) for k, v in tm.state_dict().items()}
        self.assertEqual(got, {k: tuple(v) for k, v in want.items()})

    def test_default_config_is_valid(self):
        cfg = dict(M.DEFAULT_CONFIG)
        R.SalaConfig(cfg)  # the reference's config check (MODEL-SEMANTICS)
        tm = M.SalaForCausalLM(cfg)
        n = tm.num_parameters()
        self.assertLess(2 * n, 20e6)  # bf16 weights under 20 MB
        self.assertGreater(n, 3e6)


class ExportTest(unittest.TestCase):
    def test_export_loads_in_reference(self):
        import export
        cfg = tiny_config()
        tm = M.SalaForCausalLM(cfg)
        tm.init_weights(seed=2, std=0.05)
        with tempfile.TemporaryDirectory() as d:
            export.export_model(tm, d, tokenizer_model=None, dtype="F32")
            with open(os.path.join(d, "config.json")) as f:
                self.assertEqual(json.load(f)["mixer_types"], cfg["mixer_types"])
            ref = R.SalaModel.from_pretrained(d)
            ids = np.arange(200) % cfg["vocab_size"]
            r = ref.forward(ids, mode="always_sparse")
            with torch.no_grad():
                logits = tm(torch.as_tensor(ids)[None])
            self.assertLess(rel_err(logits[0], r.logits), 1e-4)


class CurriculumTest(unittest.TestCase):
    def test_scratch_copy_teaches_copying_from_the_first_steps(self):
        import train
        rng = np.random.default_rng(0)
        total, max_len = 1000, 32768
        early = [train.curriculum(s, total, max_len, rng, "scratch-copy") for s in range(150)]
        self.assertTrue(all(T in (256, 512) for T, _ in early))
        self.assertTrue(all(kw["task_weights"]["continue"] >= 0.4 and kw["scramble_p"] > 0
                            and kw["rename_sections_p"] > 0 for _, kw in early))
        late = [train.curriculum(s, total, max_len, rng, "scratch-copy")[0]
                for s in range(700, 1000)]
        self.assertEqual(max(late), max_len)
        self.assertTrue(all(T in (256, 512, max_len // 2, max_len) for T in late))
        self.assertGreater(sum(T in (256, 512) for T in late), 10)  # the short rows replayed

    def test_long_kv_trains_at_long_rows_mostly_on_key_value(self):
        import train
        rng = np.random.default_rng(0)
        steps = [train.curriculum(s, 1000, 65536, rng, "long-kv") for s in range(400)]
        long_rows = [(T, kw) for T, kw in steps if T >= 16384]
        self.assertEqual({T for T, _ in long_rows}, {16384, 32768, 65536})
        self.assertTrue(all(kw["task_weights"]["kv"] >= 0.8 for _, kw in long_rows))
        self.assertGreater(len(steps) - len(long_rows), 20)  # the short rows replayed
        self.assertLess(len(steps) - len(long_rows), 100)
        capped = {train.curriculum(s, 1000, 32768, rng, "long-kv")[0] for s in range(200)}
        self.assertLessEqual(max(capped), 32768)


class OptimizerStateQuantisationTest(unittest.TestCase):
    def test_round_trip(self):
        import train
        g = torch.Generator().manual_seed(0)
        m = torch.randn(1000, 37, generator=g) * torch.exp(torch.randn(1000, 1, generator=g))
        qm, sm = train._q_m(m)
        m2 = train._dq_m(qm, sm, m.shape)
        blocks = torch.nn.functional.pad(m.reshape(-1), (0, (-m.numel()) % 256)).reshape(-1, 256)
        bound = blocks.abs().amax(dim=1) / 127 / 2 * 1.0001
        err = torch.nn.functional.pad((m2 - m).reshape(-1), (0, (-m.numel()) % 256)).reshape(-1, 256)
        self.assertTrue(bool((err.abs().amax(dim=1) <= bound + 1e-12).all()))
        v = torch.exp(torch.randn(1000, 37, generator=g) * 6) * 1e-6
        v[3, :5] = 0.0
        qv, lo, hi = train._q_v(v)
        v2 = train._dq_v(qv, lo, hi, v.shape)
        self.assertTrue(bool((v2[3, :5] == 0).all()))
        nz = v > 0
        rel = ((v2[nz] - v[nz]).abs() / v[nz]).max()
        self.assertLess(float(rel), 0.2)
        self.assertEqual(qm.dtype, torch.int8)
        self.assertEqual(qv.dtype, torch.uint8)


if __name__ == "__main__":
    unittest.main()
