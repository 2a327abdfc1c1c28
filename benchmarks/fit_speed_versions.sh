#!/usr/bin/env bash
# fit's step against the hand-written loop (fit_recipe.py part B's two functions), for two
# versions of the code run against each other: process by process, alternating, each process
# one warm-up fit, then fit standard and the hand loop once; prints the ratio fit/hand of every
# process and the median per version. Part B's medians within one version do not resolve a
# change of 1-2% of a step on a noisy machine; pairs of processes side by side do.
#
#   benchmarks/fit_speed_versions.sh BEFORE_REV TASK [PAIRS]    # e.g. 59a29fe mnist1d-cnn 8
#
# The working tree is "after"; BEFORE_REV is checked out in a temporary worktree. Run from the
# repository root with its .venv; nothing else should run meanwhile.
set -euo pipefail
before=$1 task=$2 pairs=${3:-6}
root=$(pwd) python="$root/.venv/bin/python"
tree=$(mktemp -d)
git worktree add -q --detach "$tree" "$before"
trap 'git worktree remove --force "$tree"' EXIT
one_process='
import sys, torch
sys.path.insert(0, "benchmarks")
torch.set_num_threads(1)
import fit_recipe as fr
name, seed = sys.argv[1], int(sys.argv[2])
task = {**fr.TASKS, **fr.SPEED_ONLY}[name]
setup = task.build()
fr.fit_timed(setup, 2, "standard", 99)  # warm-up
fit, _ = fr.fit_timed(setup, task.epochs, "standard", seed)
hand, _ = fr.hand_timed(setup, task.epochs, seed)
print(f"{fit / hand:.3f}")
'
declare -A ratios
for pair in $(seq 1 "$pairs"); do
  for version in before after; do
    dir=$root; [ "$version" = before ] && dir=$tree
    ratio=$(cd "$dir" && OMP_NUM_THREADS=1 PYTHONPATH=src "$python" -c "$one_process" "$task" "$pair")
    ratios[$version]+="$ratio "
    echo "$version $ratio"
  done
done
for version in before after; do
  echo "$task $version: median fit/hand $(echo ${ratios[$version]} | tr ' ' '\n' | sort -n |
    awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}')"
done
