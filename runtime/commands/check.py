"""`edgemate check`: config, model files (sha256), audio source, display sink; exit 0 or 1."""
from __future__ import annotations

import argparse
import json
import os
from typing import Callable

from runtime.config.loader import ConfigError, to_dict

OK, WARN, FAIL = "ok", "warn", "FAIL"


def _check_models(config, results: list) -> None:
    from runtime.models.ncnn_model import ModelError
    from runtime.render.bundle import load_bundle
    from runtime.render.renderer import NcnnRenderer
    from runtime.speech.audio_model import AudioModel
    # The models are built as the appliance builds them: sha256, ncnn load, and one run on
    # zeros whose output shapes must be those the sidecars declare (NcnnModel.probe).
    try:
        sidecar = AudioModel(config.models.audio, config.models.threads).sidecar
        note = " (TEST FIXTURE)" if sidecar.fixture else ""
        results.append((OK, "audio model", f"{sidecar.path}{note}"))
    except ModelError as err:
        results.append((FAIL, "audio model", str(err)))
    try:
        bundle = load_bundle(config.avatar.bundle)
        NcnnRenderer(bundle, config.models.threads)
        note = " (TEST FIXTURE)" if bundle.fixture else ""
        width, height = bundle.frame_size
        # What the loop holds in memory (tiles: tile_template.py) against whole frames.
        held = bundle.frames.nbytes / 2 ** 20
        whole = bundle.frame_count * width * height * 3 / 2 ** 20
        memory = f"{held:.0f} MiB" + (f" as tiles ({whole:.0f} MiB whole)" if held < whole else "")
        results.append((OK, "avatar", f"{bundle.path}: {bundle.frame_count} frames "
                        f"{width}x{height}, {bundle.loop} loop, {memory}{note}"))
    except ModelError as err:
        results.append((FAIL, "avatar", str(err)))


def _check_source(config, results: list) -> None:
    audio = config.audio
    if audio.source == "files":
        from runtime.audio.wav import WavError, WavReader
        if not audio.files.playlist:
            results.append((WARN, "audio source", "files: the playlist is empty (the avatar idles)"))
        for item in audio.files.playlist:
            try:
                with WavReader(item) as wav:
                    info = f"{wav.rate} Hz, {wav.channels} ch, {wav.duration_s:.1f} s"
                results.append((OK, "audio file", f"{item}: {info}"))
            except (WavError, OSError) as err:
                # The appliance skips bad items: a warning, not a failure.
                results.append((WARN, "audio file", f"{item}: {err} (will be skipped)"))
    elif audio.source == "stream":
        folder = audio.stream.socket.parent
        state = OK if os.access(folder, os.W_OK) else FAIL
        results.append((state, "audio source", f"stream: socket {audio.stream.socket}"
                        + ("" if state == OK else f" (cannot write to {folder})")))
    elif audio.source == "mic":
        from .devices import find_input_device
        state, message = find_input_device(audio.mic.device)
        results.append((OK if state else FAIL, "audio source", f"mic: {message}"))


def _check_display(config, results: list) -> None:
    display = config.display
    if display.sink == "window":
        from runtime.display.sink import DisplayError
        from runtime.display.window import probe_path
        try:
            driver, path, why = probe_path(display.driver, display.path)
            results.append((OK, "display", f"window on SDL driver {driver}: path {path} ({why})"))
        except DisplayError as err:
            state = WARN if display.fallback != "exit" else FAIL
            results.append((state, "display", f"{err}; display.fallback: {display.fallback}"))
    if display.sink == "record" or display.fallback == "record":
        from runtime.display.record import find_ffmpeg
        from runtime.display.sink import DisplayError
        try:
            results.append((OK, "ffmpeg", find_ffmpeg(display.record.ffmpeg)))
        except DisplayError as err:
            results.append((FAIL if display.sink == "record" else WARN, "ffmpeg", str(err)))


def _check_sensors(config, results: list) -> None:
    """What the quality governor will read; a missing sensor is fine (it is optional)."""
    from runtime.quality.sensors import discover
    if config.render.quality != "auto":
        results.append((OK, "governor", f"off: render.quality fixed at {config.render.quality}"))
        return
    sensors = config.governor.sensors
    found = discover(sensors)
    for line in found.describe():
        results.append((OK, "sensor", line))
    for path in (sensors.temperature_file, sensors.throttle_file):
        if path is not None and not path.is_file():
            results.append((WARN, "sensor",
                            f"{path} does not exist (yet): no reading until it does"))
    if found.temperature is None and not found.throttles:
        results.append((OK, "sensor", "no temperature or throttle sensor: the governor goes by "
                        "its own frame cost and drops"))


def run_check(args: argparse.Namespace, load: Callable) -> int:
    results: list[tuple[str, str, str]] = []
    try:
        config = load(args)
    except ConfigError as err:
        results += [(FAIL, "config", message) for message in err.messages]
        config = None
    if config is not None:
        results.append((OK, "config", " + ".join(str(p) for p in config.sources)))
        _check_models(config, results)
        _check_source(config, results)
        _check_display(config, results)
        _check_sensors(config, results)
    ok = all(state != FAIL for state, _, _ in results)
    if args.json:
        print(json.dumps({"ok": ok, "results": [{"state": s, "item": i, "message": m}
                                                for s, i, m in results],
                          "config": to_dict(config) if config else None}, indent=2))
    else:
        for state, item, message in results:
            print(f"{state:<5} {item:<13} {message}")
    return 0 if ok else 1
