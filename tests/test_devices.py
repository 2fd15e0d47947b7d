"""devices: ``auto`` picks what exists; a device this machine lacks is a ValueError before any
tensor moves (issue 12: F20); the widget offers only devices that exist."""

from __future__ import annotations

import pytest
import torch
from _common import check_result, hazy

import napari_clearnet as nc
from napari_clearnet.core import devices


@pytest.mark.parametrize("device", ["mps", "xpu", "meta", "foo", "cuda:7", "", "cpu:1"])
def test_devices_this_machine_lacks_are_value_errors(device: str) -> None:  # F20
    if device in ("", "cpu:1"):
        check_result(nc.dehaze(hazy(), method="dcp", device=device), (20, 28, 3))  # cases that held
        return
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    with pytest.raises(ValueError, match="device") as exc:
        nc.dehaze(hazy(), method="dcp", device=device)
    assert "cpu" in str(exc.value)


def test_auto_and_the_widget_list_offer_only_devices_that_exist() -> None:
    offered = devices.available_devices()
    assert offered[:2] == ["auto", "cpu"]
    assert ("cuda" in offered) == torch.cuda.is_available()
    for name in offered:
        devices.pick_device(name)  # every offered device can run
    assert devices.pick_device("auto").type in offered
    assert (devices.pick_device("auto").type == "cuda") == torch.cuda.is_available()

