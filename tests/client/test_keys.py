"""The Python package's key functions against the shared key vectors
(tests/common/key_vectors.json, produced by an independent reference implementation), and
the package's input checking. Needs libtwclient.so (TW_CLIENT_LIB), not twd."""

import json
import os
import sys
import unittest

SOURCE = os.environ.get("TW_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(SOURCE, "client", "python"))

import tokenwarehouse as tw  # noqa: E402

with open(os.path.join(SOURCE, "tests", "common", "key_vectors.json"), encoding="utf-8") as f:
    VECTORS = json.load(f)

LLAMA = {
    "model": "meta-llama/Llama-3.1-8B-Instruct", "model_revision": "rev", "tokenizer": "tok",
    "kv_dtype": "bf16", "kv_layout": "vllm/NHD", "parallel": "tp=0/1,pp=0/1", "adapter": "",
    "tenant": "t", "chunk_tokens": "4",
}


class KeyVectorsTest(unittest.TestCase):
    def test_vectors_are_there(self):
        self.assertGreaterEqual(len(VECTORS["cases"]), 10)
        self.assertGreaterEqual(len(VECTORS["raw_digests"]), 1)

    def test_raw_digests(self):
        for v in VECTORS["raw_digests"]:
            with self.subTest(namespace=v["namespace"]):
                got = tw.namespace_digest(v["namespace"], normalize=False)
                self.assertEqual(got.hex(), v["ns_digest"])

    def test_cases(self):
        for case in VECTORS["cases"]:
            with self.subTest(case=case["name"]):
                self.assertEqual(tw.normalize_namespace(case["namespace"]), case["normalized"])
                self.assertEqual(tw.namespace_digest(case["namespace"]).hex(), case["ns_digest"])
                extras = [bytes.fromhex(e) for e in case["extras"]] or None
                keys = tw.chunk_keys(case["namespace"], case["tokens"], extras)
                self.assertEqual([k.hex() for k in keys], case["keys"])
                # The normalised namespace hashed as given gives the same keys.
                keys2 = tw.chunk_keys(case["normalized"], case["tokens"], extras,
                                      normalize=False)
                self.assertEqual(keys2, keys)

    def test_chain_step_by_step(self):
        for case in VECTORS["cases"]:
            if not case["keys"]:
                continue
            with self.subTest(case=case["name"]):
                n = int(case["normalized"]["chunk_tokens"])
                parent = bytes.fromhex(case["ns_digest"])
                extras = [bytes.fromhex(e) for e in case["extras"]]
                for j, want in enumerate(case["keys"]):
                    extra = extras[j] if j < len(extras) else b""
                    parent = tw.chunk_key(parent, case["tokens"][j * n:(j + 1) * n], extra)
                    self.assertEqual(parent.hex(), want)


class KeyInputsTest(unittest.TestCase):
    def test_only_full_chunks(self):
        self.assertEqual(len(tw.chunk_keys(LLAMA, list(range(11)))), 2)
        self.assertEqual(tw.chunk_keys(LLAMA, []), [])

    def test_prefix_property(self):
        a = tw.chunk_keys(LLAMA, list(range(12)))
        b = tw.chunk_keys(LLAMA, list(range(8)) + [99, 98, 97, 96])
        self.assertEqual(a[:2], b[:2])
        self.assertNotEqual(a[2], b[2])

    def test_spelling_does_not_matter(self):
        other = dict(LLAMA, kv_dtype="torch.bfloat16", parallel="pp=0/1, tp=0/1",
                     chunk_tokens=4)
        self.assertEqual(tw.chunk_keys(other, list(range(8))), tw.chunk_keys(LLAMA, range(8)))
        self.assertNotEqual(tw.namespace_digest(other, normalize=False),
                            tw.namespace_digest(LLAMA, normalize=False))

    def test_missing_fields_are_empty(self):
        self.assertEqual(tw.namespace_digest({}, normalize=False).hex(),
                         VECTORS["raw_digests"][0]["ns_digest"])

    def test_errors(self):
        with self.assertRaises(ValueError):
            tw.chunk_keys(dict(LLAMA, colour="blue"), [1])
        with self.assertRaises(ValueError):
            tw.chunk_keys(LLAMA, [1, 2, -3, 4])
        with self.assertRaises(ValueError):
            tw.chunk_keys(LLAMA, [2 ** 32])
        with self.assertRaises(TypeError):
            tw.chunk_keys(LLAMA, [1, 2, 3, 4], extras=["text"])
        with self.assertRaises(tw.TokenWarehouseError) as cm:
            tw.chunk_keys(dict(LLAMA, chunk_tokens="0"), [1])
        self.assertEqual(cm.exception.name, "INVALID_ARGUMENT")
        self.assertIn("chunk_tokens", str(cm.exception))
        with self.assertRaises(tw.TokenWarehouseError) as cm:
            tw.normalize_namespace(dict(LLAMA, parallel="tp=8/8"))
        self.assertIn("parallel", cm.exception.message)
        with self.assertRaises(ValueError):
            tw.chunk_key(b"short", [1])

    def test_extras_change_keys(self):
        plain = tw.chunk_keys(LLAMA, list(range(8)))
        salted = tw.chunk_keys(LLAMA, list(range(8)), [b"salt"])
        self.assertNotEqual(plain[0], salted[0])
        self.assertNotEqual(plain[1], salted[1])
        self.assertEqual(tw.chunk_keys(LLAMA, list(range(8)), [b"", b""]), plain)


if __name__ == "__main__":
    unittest.main()
