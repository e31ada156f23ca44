"""The lab authoring toolkit: `forge lab new` scaffolds a lab, `forge lab test` proves it.

See docs/authoring.md. `labtest` is the test plan file, `harness` launches and grades labs
with the real runtime, `attacks` holds the generic gaming attempts, `prove` runs them all.
"""
