"""The tuned files shipped in vitune/configs/: valid, and tuned for the kernels installed
with them. A kernel edit makes their buckets stale (every H100/H200 user then sees a
warning and may run a config that is no longer the fastest): re-tune them on the cards
(`STAGES=ship bash scripts/gpu_lane.sh`), or, where no card is at hand, list the buckets
here with the reason, so the debt is written down."""

from vitune.kernels.vision_attn.identity import kernel_hash
from vitune.runtime.schema import bucket_key, load_config_file
from vitune.runtime.selector import SHIPPED_DIR

# (file, bucket) -> why it was not re-tuned with the current kernels
KNOWN_STALE = {
    ("h100.yaml", "d128-bfloat16-full-L4096"):
        "the H100 re-tune of 2026-12-06 stopped at its time limit before this bucket",
}


def shipped_buckets():
    for path in sorted(SHIPPED_DIR.glob("*.yaml")):
        for b in load_config_file(path)["buckets"]:
            key = bucket_key(b["head_dim"], b["dtype"], b["regime"], b["seqlen"],
                             b.get("rotary", False))
            yield path.name, key, b


def test_shipped_buckets_are_tuned_for_the_installed_kernels():
    stale = {(name, key) for name, key, b in shipped_buckets()
             if b["provenance"].get("kernel_hash") != kernel_hash()}
    assert stale - set(KNOWN_STALE) == set(), (
        f"tuned for another kernel than the installed {kernel_hash()}: re-tune them or "
        "list them in KNOWN_STALE with the reason")
    assert set(KNOWN_STALE) <= stale, "a bucket listed as stale is current: drop it"


def test_every_shipped_bucket_says_what_auto_runs_with_out():
    missing = [(name, key) for name, key, b in shipped_buckets()
               if "backend_with_out" not in b and (name, key) not in KNOWN_STALE]
    assert missing == []
