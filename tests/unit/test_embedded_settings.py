"""The embedded server's postgresql.conf gets Coinfrs's settings block once, and a newer block over an older one."""

from pathlib import Path

from warehouse.db import _SETTINGS_MARK, EMBEDDED_SETTINGS, _write_embedded_settings


def _settings(conf: Path) -> dict[str, str]:
    """name -> value as PostgreSQL reads the file: the last line of a name wins."""
    out: dict[str, str] = {}
    for line in conf.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            name, value = (part.strip() for part in line.split("=", 1))
            out[name] = value
    return out


def test_a_new_data_directory_gets_the_block_once(tmp_path: Path) -> None:
    conf = tmp_path / "postgresql.conf"
    conf.write_text("max_connections = 100\nshared_buffers = 128MB\n", encoding="utf-8")
    _write_embedded_settings(tmp_path)
    _write_embedded_settings(tmp_path)
    text = conf.read_text(encoding="utf-8")
    assert text.count(_SETTINGS_MARK) == 1
    settings = _settings(conf)
    assert settings["wal_buffers"] == "'16MB'" and settings["max_connections"] == "300"
    assert settings["shared_buffers"] == "128MB"


def test_an_older_block_is_overridden_by_the_current_one(tmp_path: Path) -> None:
    conf = tmp_path / "postgresql.conf"
    conf.write_text(f"max_connections = 100\n\n{_SETTINGS_MARK}\nmax_connections = 300\n", encoding="utf-8")
    _write_embedded_settings(tmp_path)
    assert _settings(conf) == {name: value for name, value in EMBEDDED_SETTINGS.items()}
    assert conf.read_text(encoding="utf-8").count(_SETTINGS_MARK) == 2
    _write_embedded_settings(tmp_path)
    assert conf.read_text(encoding="utf-8").count(_SETTINGS_MARK) == 2
