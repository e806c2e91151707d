"""Run sushy-tools' `sushy-emulator` with its fake driver, plus BIOS attributes and a BIOS version per system.

The fake driver answers BIOS requests with 'not supported' (only the libvirt driver, which needs a libvirt
daemon, keeps BIOS settings). This keeps them in the fake system's record the way the libvirt driver does
in its domain XML, so that reading and setting BIOS attributes goes through the emulator's real Redfish
BIOS resources (`Systems/{id}/BIOS`, `BIOS/Settings`). Everything else is the stock emulator; its command
line is unchanged (`python tests/redfish_emulator.py --fake --config ... -i 127.0.0.1 -p PORT`).
"""

from __future__ import annotations

import sys
from typing import Any

from sushy_tools.emulator import main
from sushy_tools.emulator.resources.systems import fakedriver

DEFAULT_BIOS = {"BootMode": "Uefi", "SriovGlobalEnable": "Disabled", "ProcVirtualization": "Enabled"}


class FakeDriverWithBios(fakedriver.FakeDriver):  # type: ignore[misc]
    def get_bios(self, identity: str) -> dict[str, Any]:
        return dict(self._get(identity).get("bios") or DEFAULT_BIOS)

    def set_bios(self, identity: str, attributes: dict[str, Any]) -> None:
        self._update(identity, bios={**self.get_bios(identity), **attributes})

    def reset_bios(self, identity: str) -> None:
        self._update(identity, bios=dict(DEFAULT_BIOS))

    def get_versions(self, identity: str) -> dict[str, str]:
        return {"BiosVersion": str(self._get(identity).get("bios_version") or "1.0.0")}


if __name__ == "__main__":
    fakedriver.FakeDriver = FakeDriverWithBios
    sys.exit(main.main())
