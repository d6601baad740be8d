#!/usr/bin/env bash
# Reproduces the Triton 3.6 wgmma miscompiles of docs/decisions.md, one process per case.
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
for c in d72pad d72split_stride80 d72split_m32 d72split_ctrl d88pad d88split_stride96 d80s1m64 w19h16m32s1 w19h2m32s1 w10h16m32s1 w19h16default; do
  timeout 120 python3 scripts/dbg_case.py $c 2>&1 | grep -E " err |Error" | head -1 | sed "s/^/$c: /"
done
