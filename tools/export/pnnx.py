"""torch module -> ncnn .param/.bin through pnnx, quietly: the one way tools/ export a model.

pnnx works beside its .pt file and leaves a dozen intermediate files there, so it runs in a
temp folder and only NAME.ncnn.param and NAME.ncnn.bin are copied out. It prints pages of
converter passes straight to fds 1 and 2 (C++, not Python's streams): they go to a log file
that is shown only if the export fails.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch


def export_to_ncnn(module: torch.nn.Module, example: tuple[torch.Tensor, ...], out_dir: Path,
                   name: str) -> None:
    """Trace `module` on `example` and write out_dir/NAME.ncnn.param and NAME.ncnn.bin."""
    import pnnx

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pnnx-") as tmp:
        chatter = open(Path(tmp) / "pnnx.log", "w+b")
        saved = (os.dup(1), os.dup(2))
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(chatter.fileno(), 1)
        os.dup2(chatter.fileno(), 2)
        failed = False
        try:
            with torch.no_grad():
                pnnx.export(module.eval(), str(Path(tmp) / f"{name}.pt"), example)
        except Exception:
            failed = True
            raise
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if failed:
                chatter.seek(0)
                sys.stderr.write(chatter.read().decode(errors="replace")[-4000:])
            chatter.close()
        for suffix in ("ncnn.param", "ncnn.bin"):
            shutil.copyfile(Path(tmp) / f"{name}.{suffix}", out_dir / f"{name}.{suffix}")
