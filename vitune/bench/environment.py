"""Provenance of a measurement: the card, its capability, the software, the date."""

from __future__ import annotations

import datetime
import platform

import torch


def environment(device: torch.device | None = None) -> dict:
    import triton

    info = {
        "torch": str(torch.__version__),
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
    }
    if device is not None and device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["device_name"] = props.name
        info["capability"] = f"{props.major}.{props.minor}"
        info["sms"] = props.multi_processor_count
    else:
        info["device_name"] = "cpu (triton interpreter)"
        info["capability"] = None
    return info
