"""SAT mint and verify throughput (tokens/s), median of several runs, with a 3-key keyring."""

from __future__ import annotations

import statistics
import time

from forge.config.keyring import HmacKeyring
from forge.tokens import SAT, mint_token, verify_token

RUNS = 7
N = 5_000
CLAIMS = {"scenario_id": "scn-0123456789abcdef", "track": "netplus", "template_id": "netplus",
          "sub": "learner-1", "tenant_id": "tenant-1", "plan": "PRO", "et_jti": "e" * 32}


def rate(fn: object, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()  # type: ignore[operator]
    return n / (time.perf_counter() - start)


def main() -> None:
    ring = HmacKeyring("SAT_HMAC_SECRET", current=b"c" * 48, previous=b"p" * 48, next=b"n" * 48)
    token = mint_token(ring, SAT, CLAIMS)
    mint_rates = [rate(lambda: mint_token(ring, SAT, CLAIMS), N) for _ in range(RUNS)]
    verify_rates = [rate(lambda: verify_token(ring, SAT, token), N) for _ in range(RUNS)]
    mint_med, verify_med = statistics.median(mint_rates), statistics.median(verify_rates)
    print(f"SAT mint   : {mint_med:>10,.0f} tokens/s (median of {RUNS} x {N})")
    print(f"SAT verify : {verify_med:>10,.0f} tokens/s (median of {RUNS} x {N})")
    print(f"verify/mint ratio: {verify_med / mint_med:.2f}")


if __name__ == "__main__":
    main()
