# Sourced by .ci/lock and `.ci/run --latest`: install_latest VENV makes a fresh virtual
# environment and installs the project with all extras, with no lock: the newest versions
# that pyproject.toml's ranges allow. Only torch is held at the lock's version (a newer
# torch, or one pip picks itself, can be a multi-GB CUDA build).
install_latest() {
    local venv="$1" torch_pin
    torch_pin="$(grep -E '^torch==' constraints.txt 2>/dev/null || echo 'torch==2.13.0')"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "$torch_pin"
    "$venv/bin/pip" install -q --disable-pip-version-check -c <(echo "$torch_pin") -e ".[dev]"
}
