"""Configuration failures stop start-up with exit code 2 and the variable's name, whatever failed."""

from __future__ import annotations

import pytest

from services.runtime.config import ConfigError, load_settings
from services.watchlist.config import WatchlistSettings


def test_a_value_that_is_not_json_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEGATE_WATCHLIST_INDEX_PARAMS", "M=16")  # pydantic-settings cannot parse it at all
    with pytest.raises(ConfigError) as err:
        load_settings(WatchlistSettings)
    assert err.value.code == 2
    assert "FACEGATE_WATCHLIST_INDEX_PARAMS: not a valid JSON value" in str(err.value)


def test_a_bad_value_names_its_variable_and_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEGATE_WATCHLIST_DEFAULT_TOP_K", "many")
    with pytest.raises(ConfigError) as err:
        load_settings(WatchlistSettings)
    assert "FACEGATE_WATCHLIST_DEFAULT_TOP_K" in str(err.value) and "'many'" in str(err.value)
