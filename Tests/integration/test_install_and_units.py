"""`make install` / `make uninstall` into a temporary DESTDIR, and the systemd units they install:
`systemd-analyze verify` and `systemd-analyze security --offline=true` (exposure at most 1.0),
the consistency of the paths across the socket unit, the service and the example configuration,
and `magiclinkd check-config` on that example.

Nothing here starts the units (that needs systemd as PID 1). The tests need `make` and
`systemd-analyze` (Debian package `systemd`, installed by scripts/setup); without them they fail
with a message saying so rather than skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, clean_env, make_tempdir, require_binary

PREFIX = "/usr/local"
UNITS = ("magiclinkd.socket", "magiclinkd.service")
SOCKET_PATH = "/run/magiclinkd/magiclinkd.sock"
MAX_EXPOSURE = 1.0

# What `systemd-analyze security` still counts against the service, and why it must stay:
# the daemon runs in the host's root (no RootDirectory=), sends sd_notify over AF_UNIX, talks
# SMTP and DNS over AF_INET/AF_INET6 (so no PrivateNetwork=), ProtectClock= adds a read-only
# char-rtc entry to the device ACL, and the IP allow list names localhost.
ACCEPTED_EXPOSURES = {
    "RootDirectory=/RootImage=",
    "RestrictAddressFamilies=~AF_UNIX",
    "RestrictAddressFamilies=~AF_(INET|INET6)",
    "PrivateNetwork=",
    "DeviceAllow=",
    "IPAddressDeny=",
}

# Variables that an outer make (make test) or the environment could pass into the make runs here.
MAKE_VARIABLES = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "DESTDIR", "PREFIX", "BINDIR",
                  "UNITDIR", "SYSCONFDIR", "DOCDIR", "BINARY", "SWIFT", "INSTALL")


# --------------------------------------------------------------------------------------------
# tools
# --------------------------------------------------------------------------------------------


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: these tests need it. Install the Debian package '{package}' "
            f"(scripts/setup does: apt-get install {package}).",
            pytrace=False,
        )
    return path


def systemd_analyze() -> str:
    return tool("systemd-analyze", "systemd")


def make(*args, destdir: Path | None = None, check: bool = True, **variables) -> subprocess.CompletedProcess:
    """Run `make -C <repo> args... VAR=value...` with a clean make environment."""
    env = clean_env({name: None for name in MAKE_VARIABLES})
    cmd = [tool("make", "make"), "--no-print-directory", "-C", str(REPO), *args]
    if destdir is not None:
        variables.setdefault("DESTDIR", str(destdir))
    cmd += [f"{k}={v}" for k, v in variables.items()]
    proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited with {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def install(destdir: Path, **variables) -> subprocess.CompletedProcess:
    variables.setdefault("PREFIX", PREFIX)
    variables.setdefault("BINARY", str(require_binary()))
    return make("install", destdir=destdir, **variables)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def unit_entries(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) of a unit file, in order, repeated keys kept (systemd syntax)."""
    entries, section = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not a key=value line: {raw!r}"
        entries.append((section, key.strip(), value.strip()))
    return entries


def unit_values(path: Path, section: str, key: str) -> list[str]:
    return [v for s, k, v in unit_entries(path) if s == section and k == key]


def unit_value(path: Path, section: str, key: str) -> str:
    values = unit_values(path, section, key)
    assert len(values) == 1, f"{path}: expected one {key}= in [{section}], found {values}"
    return values[0]


def unit_environment(path: Path) -> dict[str, str]:
    env = {}
    for value in unit_values(path, "Service", "Environment"):
        name, _, val = value.partition("=")
        env[name] = val
    return env


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


class Installed:
    def __init__(self, destdir: Path, output: str):
        self.destdir = destdir
        self.output = output
        self.binary = destdir / PREFIX.lstrip("/") / "bin/magiclinkd"
        self.unitdir = destdir / PREFIX.lstrip("/") / "lib/systemd/system"
        self.confdir = destdir / "etc/magiclinkd"
        self.example = self.confdir / "magiclinkd.yaml.example"
        self.docdir = destdir / PREFIX.lstrip("/") / "share/doc/magiclinkd"

    def unit(self, name: str) -> Path:
        return self.unitdir / name


@pytest.fixture(scope="module")
def installed():
    destdir = make_tempdir("mld-destdir-")
    try:
        proc = install(destdir)
        yield Installed(destdir, proc.stdout + proc.stderr)
    finally:
        shutil.rmtree(destdir, ignore_errors=True)


@pytest.fixture
def destdir():
    d = make_tempdir("mld-destdir-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# make install / uninstall
# --------------------------------------------------------------------------------------------


def test_install_puts_every_file_in_place_with_its_mode(installed):
    expected = {
        installed.binary: 0o755,
        installed.unit("magiclinkd.socket"): 0o644,
        installed.unit("magiclinkd.service"): 0o644,
        installed.example: 0o644,
        installed.docdir / "README.md": 0o644,
        installed.docdir / "README.systemd.md": 0o644,
    }
    for path, want in expected.items():
        assert path.is_file(), f"make install did not create {path}; output:\n{installed.output}"
        assert mode(path) == want, f"{path} has mode {mode(path):04o}, expected {want:04o}"
        assert str(path) in installed.output, f"make install does not say where {path} went:\n{installed.output}"
    assert not (installed.confdir / "magiclinkd.yaml").exists(), "make install must not create magiclinkd.yaml"
    assert installed.example.read_text() == (REPO / "systemd/magiclinkd.yaml.example").read_text()
    assert installed.binary.read_bytes() == require_binary().read_bytes()


def test_installed_binary_runs(installed):
    proc = subprocess.run([str(installed.binary), "--version"], capture_output=True, text=True, timeout=15,
                          env=clean_env(), stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc
    assert re.fullmatch(r"magiclinkd \d+\.\d+\.\d+\S*\n?", proc.stdout), proc.stdout


def test_installed_units_point_at_the_installed_paths(installed):
    service = installed.unit("magiclinkd.service")
    assert unit_value(service, "Service", "ExecStart") == \
        f"{PREFIX}/bin/magiclinkd --config /etc/magiclinkd/magiclinkd.yaml"
    for name in UNITS:
        text = installed.unit(name).read_text()
        for doc in re.findall(r"file://(\S+)", text):
            assert (installed.destdir / doc.lstrip("/")).is_file(), f"{name}: Documentation= names {doc}, not installed"
    # The repository's units differ from the installed ones only by the rewritten paths.
    for name in UNITS:
        assert unit_entries(installed.unit(name)) == unit_entries(REPO / "systemd" / name)


def test_install_honours_prefix_unitdir_and_sysconfdir(destdir):
    proc = install(destdir, PREFIX="/opt/mld", UNITDIR="/etc/systemd/system", SYSCONFDIR="/etc/opt/mld")
    service = destdir / "etc/systemd/system/magiclinkd.service"
    assert service.is_file(), proc.stdout
    assert (destdir / "opt/mld/bin/magiclinkd").is_file()
    assert (destdir / "etc/opt/mld/magiclinkd/magiclinkd.yaml.example").is_file()
    assert unit_value(service, "Service", "ExecStart") == \
        "/opt/mld/bin/magiclinkd --config /etc/opt/mld/magiclinkd/magiclinkd.yaml"
    assert not [e for e in unit_entries(service) if "/usr/local" in e[2]], unit_entries(service)
    assert not (destdir / "opt/mld/lib/systemd").exists()


def test_install_twice_keeps_the_admins_configuration(destdir):
    install(destdir)
    config = destdir / "etc/magiclinkd/magiclinkd.yaml"
    config.write_text("# the admin's own\ncallback_url: https://admin.example.org/cb\n")
    config.chmod(0o640)
    os.utime(config, (1_000_000_000, 1_000_000_000))
    before = (config.read_bytes(), config.stat().st_mtime_ns, mode(config))

    proc = install(destdir)  # a second install over the first must succeed
    assert (config.read_bytes(), config.stat().st_mtime_ns, mode(config)) == before, \
        "make install touched an existing magiclinkd.yaml"
    assert f"keep:    {config}" in proc.stdout, proc.stdout
    assert (destdir / "usr/local/bin/magiclinkd").is_file()


def test_install_builds_only_when_no_binary_is_given():
    with_binary = make("-n", "install", DESTDIR="/nonexistent", BINARY="/some/magiclinkd").stdout
    assert "swift build" not in with_binary, with_binary
    assert "/some/magiclinkd" in with_binary
    without = make("-n", "install", DESTDIR="/nonexistent").stdout
    # The release binary carries the Swift runtime (no toolchain needed on the server).
    assert re.search(r"^swift build -c release --static-swift-stdlib\b", without, re.M), without
    assert f"{REPO}/.build/release/magiclinkd" in without, without


def test_uninstall_removes_what_install_put_and_keeps_configuration(destdir):
    install(destdir)
    config = destdir / "etc/magiclinkd/magiclinkd.yaml"
    config.write_text("app_name: Kept\n")
    proc = make("uninstall", destdir=destdir, PREFIX=PREFIX)
    for path in ("usr/local/bin/magiclinkd", "usr/local/lib/systemd/system/magiclinkd.socket",
                 "usr/local/lib/systemd/system/magiclinkd.service", "etc/magiclinkd/magiclinkd.yaml.example",
                 "usr/local/share/doc/magiclinkd"):
        assert not (destdir / path).exists(), f"make uninstall left {path}:\n{proc.stdout}"
        if path != "usr/local/share/doc/magiclinkd":
            assert f"remove:  {destdir / path}" in proc.stdout, proc.stdout
    assert config.read_text() == "app_name: Kept\n"
    make("uninstall", destdir=destdir, PREFIX=PREFIX)  # nothing left to remove: still fine


# --------------------------------------------------------------------------------------------
# the units
# --------------------------------------------------------------------------------------------


def test_socket_service_and_example_agree_on_the_paths(installed):
    socket_unit = installed.unit("magiclinkd.socket")
    service = installed.unit("magiclinkd.service")
    assert unit_value(socket_unit, "Socket", "ListenStream") == SOCKET_PATH
    assert unit_value(socket_unit, "Socket", "SocketMode") == "0660"
    assert unit_value(socket_unit, "Socket", "SocketUser") == "root"
    assert unit_value(socket_unit, "Socket", "SocketGroup") == "www-data"
    assert unit_value(socket_unit, "Socket", "FileDescriptorName") == "magiclinkd"
    assert unit_value(socket_unit, "Socket", "Accept") == "no"
    assert unit_value(socket_unit, "Install", "WantedBy") == "sockets.target"

    assert unit_value(service, "Service", "Type") == "notify"
    assert "magiclinkd.socket" in unit_value(service, "Unit", "Requires").split()
    # systemd deletes a RuntimeDirectory= when the service stops: the socket must not live there.
    for runtime_dir in unit_values(service, "Service", "RuntimeDirectory"):
        for d in runtime_dir.split():
            assert not SOCKET_PATH.startswith(f"/run/{d}/"), f"socket inside RuntimeDirectory={d}"

    env = unit_environment(service)
    assert env["MAGICLINKD_SOCKET"] == SOCKET_PATH
    state_dirs = " ".join(unit_values(service, "Service", "StateDirectory")).split()
    for name in ("MAGICLINKD_DATABASE", "MAGICLINKD_OUTBOX_DIR"):
        assert any(env[name].startswith(f"/var/lib/{d}/") for d in state_dirs), \
            f"{name}={env[name]} is outside the StateDirectory= {state_dirs}"
    example_socket = re.search(r"^socket:\s*(\S+)", installed.example.read_text(), re.M)
    assert example_socket and example_socket.group(1) == SOCKET_PATH

    # The SMTP password credential must be optional (a relative name: systemd 252 skips a
    # missing one) so that a setup without SMTP AUTH still starts.
    for value in unit_values(service, "Service", "LoadCredential"):
        cred_id, _, source = value.partition(":")
        assert not source.startswith("/"), f"LoadCredential={value}: an absolute path makes the file mandatory"


def verify_copies(installed: Installed, workdir: Path) -> list[Path]:
    """The installed units, with ExecStart pointing at the DESTDIR binary (verify checks that the
    command exists; on the target machine it is $(PREFIX)/bin/magiclinkd)."""
    copies = []
    for name in UNITS:
        text = installed.unit(name).read_text()
        text = text.replace(f"ExecStart={PREFIX}/bin/magiclinkd", f"ExecStart={installed.binary}")
        copy = workdir / name
        copy.write_text(text)
        copies.append(copy)
    return copies


def run_verify(paths: list[Path]) -> tuple[subprocess.CompletedProcess, list[str]]:
    proc = subprocess.run([systemd_analyze(), "verify", *map(str, paths)], capture_output=True, text=True,
                          timeout=60, env=clean_env({"SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "cat"}),
                          stdin=subprocess.DEVNULL)
    # Only what concerns our units counts: a host's other unit files may draw warnings too.
    workdir = str(paths[0].parent)
    ours = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "magiclinkd" in ln or workdir in ln]
    return proc, ours


def test_units_pass_systemd_analyze_verify(installed):
    service = installed.unit("magiclinkd.service")
    for key in ("ExecReload", "ExecStartPre", "ExecStartPost", "ExecStop", "ExecStopPost"):
        for value in unit_values(service, "Service", key):
            command = value.lstrip("-@:+!").split()[0]
            if command.startswith("/") and not os.access(command, os.X_OK):
                pytest.fail(f"{key}= runs {command}, which this machine lacks (verify would fail): "
                            "install it (/bin/kill is in the Debian package 'procps')", pytrace=False)
    workdir = make_tempdir("mld-verify-")
    try:
        proc, ours = run_verify(verify_copies(installed, workdir))
        assert proc.returncode == 0 and not ours, (
            f"systemd-analyze verify exited with {proc.returncode}; about our units:\n" + "\n".join(ours)
            + f"\n\nfull stdout:\n{proc.stdout}\nfull stderr:\n{proc.stderr}"
        )

        # The check is not vacuous: a bad key in our service is reported and caught above.
        bad = workdir / "magiclinkd.service"
        bad.write_text(bad.read_text() + "\n[Service]\nNoSuchDirective=1\n")
        _, ours = run_verify([workdir / "magiclinkd.socket", bad])
        assert any("NoSuchDirective" in ln for ln in ours), f"verify did not report a bad key: {ours}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_service_exposure_is_at_most_1_0(installed):
    service = installed.unit("magiclinkd.service")
    cmd = [systemd_analyze(), "security", "--offline=true", f"--threshold={int(MAX_EXPOSURE * 10)}",
           "--no-pager", str(service)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          env=clean_env({"SYSTEMD_COLORS": "0"}))
    table = proc.stdout + proc.stderr
    m = re.search(r"Overall exposure level for magiclinkd\.service: (\d+\.\d+)", table)
    assert m, f"{' '.join(cmd)}: no overall exposure level in the output:\n{table}"
    exposure = float(m.group(1))
    assert exposure <= MAX_EXPOSURE and proc.returncode == 0, (
        f"exposure {exposure} (exit status {proc.returncode}), at most {MAX_EXPOSURE} wanted:\n{table}"
    )

    # And what is still counted is only what the daemon needs (see ACCEPTED_EXPOSURES).
    proc = subprocess.run([systemd_analyze(), "security", "--offline=true", "--json=short", str(service)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, env=clean_env())
    exposed = {item["name"]: item["description"] for item in json.loads(proc.stdout)
               if item.get("exposure") not in (None, "0.0") and item.get("set") is False}
    unexpected = {k: v for k, v in exposed.items() if k not in ACCEPTED_EXPOSURES}
    assert not unexpected, f"new exposures in magiclinkd.service: {unexpected}\n{table}"


# --------------------------------------------------------------------------------------------
# the example configuration
# --------------------------------------------------------------------------------------------


def check_config(installed: Installed, config_text: str | None, extra_env: dict) -> subprocess.CompletedProcess:
    """check-config as the service runs it: the unit's Environment= applied."""
    workdir = make_tempdir("mld-cfg-")
    try:
        config = installed.example
        if config_text is not None:
            config = workdir / "magiclinkd.yaml"
            config.write_text(config_text)
        env = clean_env({**unit_environment(installed.unit("magiclinkd.service")), **extra_env})
        return subprocess.run([str(installed.binary), "check-config", "--config", str(config)], cwd=str(workdir),
                              env=env, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def effective(output: str) -> dict[str, str]:
    settings = {}
    for line in output.splitlines():
        key, sep, value = line.partition(": ")
        if sep and re.fullmatch(r"[a-z_]+", key):
            settings[key] = value
    return settings


def test_example_configuration_passes_check_config(installed):
    creds = make_tempdir("mld-creds-")
    try:
        (creds / "smtp_password").write_text("app-password\n")
        (creds / "smtp_password").chmod(0o400)
        proc = check_config(installed, None, {"CREDENTIALS_DIRECTORY": str(creds)})
        assert proc.returncode == 0, f"check-config failed on the example:\n{proc.stdout}\n{proc.stderr}"
        settings = effective(proc.stdout)
        assert settings["socket"] == SOCKET_PATH
        assert settings["database"] == "/var/lib/magiclinkd/magiclinkd.sqlite"
        assert settings["key_file"] == "/var/lib/magiclinkd/magiclinkd.sqlite.key"
        assert settings["mail_transport"] == "smtp" and settings["smtp_tls"] == "starttls"
        assert settings["smtp_port"] == "587"
        assert settings["smtp_password_file"] == f"{creds}/smtp_password", "the credential is not picked up"
    finally:
        shutil.rmtree(creds, ignore_errors=True)

    # Without the credential, the start fails naming the setting, as the example says.
    proc = check_config(installed, None, {})
    assert proc.returncode == 78, proc
    assert "smtp_password_file" in proc.stderr, proc.stderr


def test_example_names_only_existing_keys(installed):
    proc = run_default_check_config(installed)
    known = set(effective(proc.stdout))
    assert "callback_url" in known and "log_level" in known, proc.stdout
    mentioned = set(re.findall(r"^(?:# )?([a-z_]+):\s", installed.example.read_text(), re.M))
    assert mentioned, "no keys found in the example"
    assert mentioned <= known, f"the example names keys that do not exist: {sorted(mentioned - known)}"


def run_default_check_config(installed: Installed) -> subprocess.CompletedProcess:
    workdir = make_tempdir("mld-cfg-")
    try:
        proc = subprocess.run([str(installed.binary), "check-config"], cwd=str(workdir), env=clean_env(),
                              capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc
        return proc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_example_local_relay_alternative_passes_check_config(installed):
    """The commented "local MTA" block, switched on in place of the provider settings."""
    lines = installed.example.read_text().splitlines()
    provider_keys = {"mail_transport", "smtp_host", "smtp_port", "smtp_tls", "smtp_username"}
    out, in_relay_block = [], False
    for line in lines:
        if line.startswith("# ---"):
            in_relay_block = "local MTA" in line
        key = re.match(r"^([a-z_]+):", line)
        if key and key.group(1) in provider_keys:
            continue
        m = re.match(r"^# ([a-z_]+:.*)$", line)
        if in_relay_block and m:
            line = m.group(1)
        out.append(line)
    text = "\n".join(out) + "\n"
    assert re.search(r"^smtp_host: localhost$", text, re.M), text
    proc = check_config(installed, text, {})
    assert proc.returncode == 0, f"check-config failed on the local relay variant:\n{text}\n{proc.stderr}"
    settings = effective(proc.stdout)
    assert settings["smtp_host"] == "localhost" and settings["smtp_tls"] == "none" and settings["smtp_port"] == "25"


def test_example_commented_settings_parse_when_switched_on(installed):
    """Every commented-out `# key: value` outside the local MTA block (except the paths that
    must exist on the host) is valid as written."""
    skip = {"templates_dir", "smtp_password_file"}
    out, in_relay_block, switched = [], False, []
    for line in installed.example.read_text().splitlines():
        if line.startswith("# ---"):
            in_relay_block = "local MTA" in line
        m = re.match(r"^# (([a-z_]+):\s.*)$", line)
        if m and not in_relay_block and m.group(2) not in skip:
            line = m.group(1)
            switched.append(m.group(2))
        out.append(line)
    assert switched, "no commented settings found"
    creds = make_tempdir("mld-creds-")
    try:
        (creds / "smtp_password").write_text("app-password\n")
        proc = check_config(installed, "\n".join(out) + "\n", {"CREDENTIALS_DIRECTORY": str(creds)})
    finally:
        shutil.rmtree(creds, ignore_errors=True)
    assert proc.returncode == 0, f"switching on {switched} broke the example:\n{proc.stderr}"
    settings = effective(proc.stdout)
    for key in switched:
        assert key in settings, (key, proc.stdout)
