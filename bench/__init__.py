"""Side-by-side benchmarks. Each reports ratios from one run; none runs in CI."""
