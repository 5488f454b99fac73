"""The ``run`` command: profile an unmodified script (or ``-m module``) as ``python`` runs it."""

from pathlib import Path
from typing import Annotated

import typer

from pinchpoint.cli.options import (
    Debug,
    Html,
    Steps,
    Warmup,
    app,
    err_console,
    fail,
    guarded,
    out_console,
    status,
    write_outputs,
)

__all__ = ["run_command"]


@app.command(
    "run",
    context_settings={
        # Everything after the script's name is the script's: `run train.py --steps 5` gives
        # the script its own --steps, as `python train.py --steps 5` would.
        "allow_extra_args": True,
        "allow_interspersed_args": False,
        "ignore_unknown_options": True,
    },
)
def run_command(
    ctx: typer.Context,
    script: Annotated[
        str,
        typer.Argument(
            help="The script to run (its arguments follow it), or with -m a module's name.",
            show_default=False,
            metavar="SCRIPT [ARGS]...",
        ),
    ],
    module: Annotated[
        bool, typer.Option("-m", "--module", help="Run a library module as a script, as python -m.")
    ] = False,
    steps: Steps = 20,
    warmup: Warmup = 2,
    stop: Annotated[
        bool,
        typer.Option(
            "--stop", help="End the script once the steps are recorded (else it goes on)."
        ),
    ] = False,
    json: Annotated[
        Path | None, typer.Option("--json", help="Also write the diagnosis as JSON to this file.")
    ] = None,
    html: Html = None,
    debug: Debug = False,
) -> None:
    """Run a script unmodified, find its training or inference steps, and diagnose them.

    pinchpoint's options come first, then the script and its own arguments (or -m and a
    module), as to python. The script runs as __main__ with its own sys.argv and keeps its exit
    status; the profile is written however it ends: a return, an exception, sys.exit, Ctrl-C or
    SIGTERM.
    """
    if script.startswith("-"):
        raise fail(
            f"no such option: {script} (pinchpoint run's options go before the script's name, "
            "the script's own after it)"
        )
    for path in (json, html):
        if path is not None and not path.parent.is_dir():
            raise fail(f"cannot write {path}: folder {path.parent} does not exist")
    from pinchpoint.recorders.autostep import StepFinder
    from pinchpoint.recorders.script import run_script

    name = script if not module else f"-m {script}"
    finder = StepFinder(steps=steps, warmup=warmup, stop=stop, name=Path(script).stem)
    outcome = guarded(debug, lambda: run_script(script, list(ctx.args), finder, module=module))
    messages = err_console()
    if outcome.profile is None:
        kind = "training or inference" if outcome.found is None else f"complete {outcome.found}"
        messages.print(
            f"pinchpoint: {name} ran no torch {kind} step to record (no optimizer.step() and "
            "no repeated model forward)",
            soft_wrap=True,
            markup=False,
        )
        outcome.end()
    recorded = len(outcome.profile.steps)
    messages.print(
        f"pinchpoint: {name} {outcome.how()}; {recorded} {outcome.found} step(s) recorded",
        markup=False,
        soft_wrap=True,
    )

    def report() -> None:
        from pinchpoint.diagnosis import diagnose
        from pinchpoint.renderers.terminal import render_diagnosis

        assert outcome.profile is not None
        with status("calibrating this machine (once)…"):
            result = diagnose(outcome.profile, name=name)
        out_console().print(render_diagnosis(result))
        write_outputs(result, "diagnosis", json, html)

    guarded(debug, report)
    outcome.end()
