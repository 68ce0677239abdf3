"""Messages between the app's widgets (small Textual `Message` classes), and the UI's text.

Widgets talk up with `post_message(...)` and are talked to (down) by method calls. The training
worker posts `RunEvents` from its thread (post_message is thread-safe), coalesced: one message per
~200 ms carrying every record since the last one, never one blocking call per step.

UI text lives here, one section per pane, so wording is reviewed in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.message import Message


# ------------------------------------------------------------------------------------------ messages
@dataclass
class OpenData(Message):
    """Open a data file (or folder) in the Data pane."""

    path: str


@dataclass
class OpenRuns(Message):
    """Show these run directories in the Monitor (`add`: overlay them on what it shows)."""

    run_dirs: list[str]
    add: bool = False


@dataclass
class RunStarted(Message):
    """A run started from the Train pane: in a thread worker (`detached=False`) or as a child process."""

    run_dir: str
    stage: str
    detached: bool = False


@dataclass
class RunEvents(Message):
    """Engine events (metrics.jsonl records) of one in-TUI run since the last such message."""

    run_dir: str
    records: list[dict] = field(default_factory=list)


@dataclass
class RunEnded(Message):
    """An in-TUI run ended: status finished | stopped | failed | crashed | interrupted."""

    run_dir: str
    status: str
    error: str | None = None


@dataclass
class ResumeRun(Message):
    """Continue a stopped or crashed run (the Train pane starts it)."""

    run_dir: str
    detached: bool = False


# ------------------------------------------------------------------------------------------ UI text
# --- app
TITLE = "workbench"
SUB_TITLE = "see the LLM training pipeline"
QUIT_RUNNING = "A run is training ({runs}). Quit now? It stops at the next step and saves a checkpoint first."
QUIT_DETACHED = "Detached runs keep training after you quit; the Runs pane shows them when you come back."
STOPPING = "Stopping {run_dir} (saving a checkpoint)…"
WORKER_ERROR = "{what} failed: {error}"

# --- data pane

# --- train pane

# --- monitor pane

# --- runs pane
