# Fits one constant C per kernel that, added to the static model's prediction,
# best matches the tune's measured winners (least squares of predicted/measured - 1).
# Before kernel_us existed C came out 3.3 us (with read_gbs 4505): kernel_us 2.3
# plus the 1.0 us launch gap in every graph-timed measurement; with it, C is ~1.0.
# Run from the repo root with build/sprig built:
#   python3 bench/results/2026-12-04_h200/fit_kernel_us.py bench/results/2026-12-04_h200/tune.json
import json, subprocess, sys
import numpy as np
tune = json.load(open(sys.argv[1]))
P, N, Y, names = [], [], [], []
for r in tune:
    fam, _, shape, dt, b, s, g, fixed = r["key"].split("|")
    sp = int(s[2:])
    a = json.loads(subprocess.run(["./build/sprig", "analyze", "--family", fam, "--model", "llama2-7b", "--sparsity", str(sp),
        "--param", r["winner"], "--no-sass", "--json"], capture_output=True, text=True).stdout)["plans"][0]
    P.append(a["predicted_us"]); N.append(len(a["kernels"])); Y.append(r["median_us"]); names.append(f"{fam} {fixed} s{sp}")
P, N, Y = map(np.array, (P, N, Y))
# minimise sum ((P + C N) / Y - 1)^2  ->  C = sum(N/Y (1 - P/Y)) / sum((N/Y)^2)
C = np.sum(N / Y * (1 - P / Y)) / np.sum((N / Y) ** 2)
print("C per kernel (us):", round(C, 3))
for c in (0, 1.0, round(C, 1)):
    r = (P + c * N) / Y
    print(f"C={c}: pred/meas min {r.min():.3f} max {r.max():.3f} geo-mean {np.exp(np.mean(np.log(r))):.3f}")
for n, p, k, y in zip(names, P, N, Y): print(f"  {n:40} meas {y:6.2f} pred {p:6.2f} -> {p + round(C,1)*k:6.2f}  {(p + round(C,1)*k)/y:.3f}")
