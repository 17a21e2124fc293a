"""``/admin/autopilot`` on the session's real gateway: behind the admin key, every domain listed."""

from __future__ import annotations

import httpx

from tests.integration.conftest import ADMIN_KEY, RunningGateway


def test_admin_autopilot_needs_the_admin_key_and_lists_every_domain(gateway: RunningGateway) -> None:
    """401 without the key; with it, one row per domain with its samples and autopilot settings."""
    assert httpx.get(gateway.url + "/admin/autopilot", timeout=30).status_code == 401
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    response = httpx.get(gateway.url + "/admin/autopilot", headers=auth, timeout=30)
    assert response.status_code == 200
    rows = {row["domain"]: row for row in response.json()["data"]}
    assert {"math", "factual", "small_talk", "code"} <= set(rows)
    assert rows["math"]["metric"] == "final_number" and rows["math"]["autopilot"] is None
    assert all(isinstance(row["samples_held"], int) for row in rows.values())
    nothing = httpx.post(gateway.url + "/admin/autopilot/small_talk/apply", headers=auth, timeout=30)
    assert nothing.status_code == 400 and "no autopilot proposal" in nothing.text
    unknown = httpx.post(gateway.url + "/admin/autopilot/nope/propose", headers=auth, timeout=30)
    assert unknown.status_code == 404
