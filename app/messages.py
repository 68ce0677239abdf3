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


@dataclass
class OpenPlayground(Message):
    """Open a run in the Playground: as its model, or (`reward`) as its reward model."""

    run_dir: str
    reward: bool = False


@dataclass
class PlayOutput(Message):
    """A Playground worker's output for request `request` (a view drops those of older requests):
    kind piece (text of answer `index`), answer (a finished answer's dict), done, error (text)."""

    request: int
    kind: str
    index: int = 0
    text: str = ""
    data: dict | None = None


# ------------------------------------------------------------------------------------------ UI text
# --- app
TITLE = "workbench"
SUB_TITLE = "see the LLM training pipeline"
QUIT_RUNNING = "A run is training ({runs}). Quit now? It stops at the next step and saves a checkpoint first."
QUIT_DETACHED = "Detached runs keep training after you quit; the Runs pane shows them when you come back."
STOPPING = "Stopping {run_dir} (saving a checkpoint)…"
WORKER_ERROR = "{what} failed: {error}"

# --- data pane
DATA_PATH_LABEL = "data"
DATA_MORE_TOKENS = "… {n:,} more tokens not drawn (the view shows the first {shown:,}; the counts cover all)"
DATA_PATH_PLACEHOLDER = "a .jsonl .json .parquet .csv .arrow .txt file or folder (o: file tree)"
DATA_FORMAT_AUTO = "auto"
DATA_FORMAT_DETECTED = "auto: {format}"
DATA_TOKENIZER_LABEL = "tokenizer"
DATA_TOKENIZER_PLACEHOLDER = "cl100k_base, a .tiktoken file, a checkpoint or run dir"
DATA_MODE_LABEL = "mode"
DATA_MAX_LEN_LABEL = "max len"
DATA_MAX_LEN_PLACEHOLDER = "none"
DATA_SEARCH_PLACEHOLDER = "/ search message text"
DATA_COL_FIRST = "first user line"
DATA_COL_TOKENS = "tokens"
DATA_COL_TRAINED = "trained"
DATA_NO_DATA = "No data open: type a path above (→ completes it) or press o for the file tree."
DATA_OPENING = "Opening {path}…"
DATA_RECORDS = "{n:,} records"
DATA_INDEXING = "{n:,} records so far · indexing {pct:.0%}"
DATA_CHECKING = " · checking {pct:.0%}"
DATA_SHOWN_GOOD = "{shown:,} good of {n:,} checked"
DATA_HITS = "{hits:,} hits for “{query}”"
DATA_SEARCHING = " · searching…"
DATA_BAD = "✗ {error}"
DATA_BAD_COUNTS = "{n:,} bad record{s}{so_far}: {reasons}"
DATA_SO_FAR = " so far"
DATA_SKIPPING = "Skipping {n:,} bad record{s}{so_far}: {reasons}"
DATA_SKIP_BUTTON = "Skip bad"
DATA_SHOW_BAD_BUTTON = "Show bad"
DATA_TOKENIZER_LOADING = "loading {spec}…"
DATA_TOKENIZER_FAILED = "Tokenizer: {error}"
DATA_MODE_IGNORED = "mode {mode}: {kind} records ignore it ({why})"
DATA_HEAD = "#{index} · {where} · {kind} · {counts}"
DATA_COUNTS = "{tokens:,} tokens · {trained:,} trained · {masked:,} masked"
DATA_PAIR_COUNTS = "{chosen:,} / {rejected:,} tokens"
DATA_PROMPT_HEAD = "prompt: {n:,} tokens, never trained"
DATA_HALF_HEAD = "{name}: {trained:,} of {response:,} trained"
DATA_WARNING = "⚠ {warning}"
DATA_TOKEN = "token {pos:,}/{n:,} · id {id} · {text} · {role} {part} · {label}"
DATA_TOKEN_TRAINED = "label {label}: trained"
DATA_TOKEN_MASKED = "label -100: masked"
DATA_NO_TOKENS = "(no tokens)"
DATA_WAITING_TOKENIZER = "Waiting for the tokenizer ({spec})…"
DATA_RECORD_ERROR = "✗ {error}"
DATA_RAW_TITLE = "── {name} ──"
DATA_BINDINGS = {"search": "Find", "raw": "Raw", "boundaries": "Bounds", "tree": "Files"}
DATA_COMMANDS = [  # (action, title, help) for the command palette
    ("open", "Data: open a file", "Type a data file or folder path (completion with → or Tab)"),
    ("tree", "Data: show / hide the file tree", "Browse folders and pick a data file"),
    ("search", "Data: search message text", "Filter the examples to those whose messages contain a text"),
    ("raw", "Data: raw messages / tokens", "Toggle between the role + content view and the token view"),
    ("boundaries", "Data: token boundaries", "Toggle alternating shades that mark where each token ends"),
    ("mode('all')", "Data: mode all", "Train every assistant turn"),
    ("mode('last')", "Data: mode last", "Train only the last assistant turn"),
    ("mode('every')", "Data: mode every", "Train every token (pretraining style)"),
    ("skip", "Data: skip / show bad records", "List only the records that load, with the bad ones counted"),
    ("tokenizer", "Data: choose the tokenizer", "cl100k_base, a .tiktoken file, or a checkpoint / run dir"),
]

# --- train pane
TRAIN_STAGE = "Stage"
TRAIN_FROM_FILE = "settings from {path}"
TRAIN_EDITED = " (edited)"
TRAIN_PICK_PARENT = "↳ or pick a run in {root}/"
TRAIN_NO_PARENTS = "(no {stages} run in {root}/ yet)"
TRAIN_GROUP_INVALID = "{group} — {n} to fix"
TRAIN_OUT = "out"
TRAIN_OUT_AUTO = "{root}/{stage}-DATE-TIME (new)"
TRAIN_DETACHED = "detached"
TRAIN_DETACHED_HELP = "Run as a `workbench train` process that keeps training after you close the TUI"
TRAIN_PROCS = "procs"
TRAIN_PROCS_HELP = ("Processes (--nproc): 1 trains here or detached; more start a detached torchrun job, one "
                    "process per rank (DDP; one GPU each on CUDA, gloo on the CPU); batch_size is per process")
TRAIN_PROCS_DETACHED = "{n} processes always run detached (torchrun)"
TRAIN_START, TRAIN_PAUSE, TRAIN_RESUME, TRAIN_STOP, TRAIN_COPY = "Start", "Pause", "Resume", "Stop", "Copy"
TRAIN_LOAD, TRAIN_SAVE = "Load", "Save"
TRAIN_INVALID = "Not started: fix {names} (the message is beside each field)"
TRAIN_GENERAL_ERROR = "Not started: {error}"
TRAIN_COPIED = "Copied: {command}"
TRAIN_LOAD_TITLE = "Load settings from a YAML file"
TRAIN_SAVE_TITLE = "Save these settings as a YAML file"
TRAIN_LOADED = "Loaded {path}"
TRAIN_SAVED = "Saved {path}"
TRAIN_IDLE = "ready: Start trains in this window; with “detached” in a process of its own"
TRAIN_STARTING = "starting {run_dir}…"
TRAIN_RUNNING = "● {run_dir}  step {step}/{max_steps}  loss {loss}  {speed:,.0f} tok/s"
TRAIN_PAUSED = "⏸ {run_dir} paused at step {step} (Resume continues, Stop saves a checkpoint)"
TRAIN_STOPPING = "■ {run_dir}: stopping after this step, saving a checkpoint…"
TRAIN_MORE = "  (+{n} more running)"
TRAIN_ENDED = "{status}: {run_dir}"
TRAIN_DETACHED_STARTED = "Detached: {run_dir} trains in process {pid}; log {log}"
TRAIN_DETACHED_RANKS = "Detached: {run_dir} trains in {n} processes (torchrun, launcher pid {pid}); log {log}"
TRAIN_DETACHED_FAILED = "the detached run exited with code {code}; the end of {log}:\n{tail}"
TRAIN_ALREADY = "{run_dir} is already training in this window"
TRAIN_NOTHING = "No run is training in this window"
TRAIN_BUG_LOGGED = "{error} (traceback in {log})"
TRAIN_COMMANDS = {  # the command palette: (title, help)
    "start": ("Train: start", "Start the stage with these settings (in this window, or detached)"),
    "pause": ("Train: pause / resume", "Pause the run between steps, or continue it"),
    "stop": ("Train: stop", "Stop the run after this step; it saves a checkpoint (resume it later)"),
    "copy": ("Train: copy the command", "Copy the equivalent `workbench train …` command"),
    "load": ("Train: load settings (YAML)", "Fill the form from a config file"),
    "save": ("Train: save settings (YAML)", "Save the form as a commented config file"),
    "detached": ("Train: toggle detached", "Run the next start as a separate `workbench train` process"),
}

# --- monitor pane
MONITOR_EMPTY = ("No run to show yet.\n\n"
                 "• Start one in the Train pane (2), or open one from the Runs pane (4).\n"
                 "• Press o here and type a run directory — also one that a `workbench train` in another\n"
                 "  terminal is writing right now: its curves grow as it trains.\n"
                 "• Or start the workbench on runs:  workbench tui runs/sft   (several: overlaid)")
MONITOR_NO_POINTS = "waiting for data…"
MONITOR_WAITING = "waiting for {path} (nothing written yet)"
MONITOR_LOG_TAG = "log-y"
MONITOR_FOLLOW_FAILED = "Reading the followed runs failed ({error}); still trying every half second."
MONITOR_OPTIONS = "x {x} · smoothing {smoothing} · log-y {logy}"
MONITOR_BAD_LINES = "{name}: {n} malformed line(s) in metrics.jsonl skipped"
MONITOR_RELOADED = "{name}: metrics.jsonl was rewritten (a resume?): reloaded"
MONITOR_NO_LOG = "(nothing in train.log yet)"
MONITOR_OPEN_PROMPT = "Run directory to follow (Enter; Esc to cancel)"
MONITOR_ADD_PROMPT = "Run directory to overlay on these charts (Enter; Esc to cancel)"
MONITOR_KEYS = {"smooth": "EMA", "logy": "Log", "xaxis": "X", "open": "Open", "add": "Add"}  # footer: short
MONITOR_COMMANDS = {  # the command palette: (title, help)
    "smooth": ("Monitor: smoothing", "Cycle the EMA smoothing of the curves: off, 0.6, 0.9, 0.99"),
    "logy": ("Monitor: log-y", "Toggle a logarithmic y axis on every chart"),
    "xaxis": ("Monitor: x = step / tokens", "Plot against optimizer steps or cumulative training tokens"),
    "open": ("Monitor: open a run directory", "Follow a run directory (replaces what the Monitor shows)"),
    "add": ("Monitor: overlay a run directory", "Add a run to the charts, to compare it with the others"),
}
# Each chart: (title, what healthy looks like — one line, it sits under the chart).
MONITOR_PANELS = {
    "loss": ("loss", "falls, then flattens; val/loss (dots) rising = overfitting"),
    "lr": ("learning rate", "linear warmup, then decays to lr × min_lr_ratio"),
    "grad_norm": ("grad norm", "steady or slowly falling; repeated spikes = unstable"),
    "tokens_per_s": ("tokens/s", "flat; dips at evals, checkpoints, or a busy CPU"),
    "moe_balance": ("MoE balance", "near 1.0 = experts evenly used; climbing = collapse"),
    "rm_accuracy": ("accuracy", "rises above 0.5 (chance); val/accuracy is the honest one"),
    "rm_margin": ("margin", "chosen − rejected reward grows; val/margin follows"),
    "rm_rewards": ("rewards", "chosen above rejected, both bounded (no drift)"),
    "rm_logprob_weight": ("log-prob weight w", "stays positive; near 0 = the head alone decides"),
    "dpo_rewards": ("rewards chosen / rejected", "rejected falls faster; chosen must not collapse"),
    "dpo_margins": ("reward margins", "rising while chosen rewards do not collapse"),
    "dpo_accuracies": ("reward accuracies", "from ~0.5 toward 1; val far below = overfitting"),
    "dpo_logps": ("log-probs chosen / rejected", "chosen holds up while rejected falls"),
    "dpo_nll": ("NLL of chosen (rpo_alpha)", "flat or falling: what SFT taught is kept"),
    "ppo_scores": ("scores", "reward-model scores rise; val/score (dots) follows"),
    "ppo_kl": ("KL to reference", "≥ 0 and bounded; a steady climb = drifting from SFT"),
    "ppo_reward": ("KL-penalised reward", "score − β·KL, what PPO maximises: rises"),
    "ppo_entropy": ("entropy", "falls slowly; a crash toward 0 = collapse to one answer"),
    "ppo_clipfrac": ("clip fraction", "small (< 0.2); high = updates too large"),
    "ppo_approxkl": ("approx KL (policy step)", "small (≈ 0.01); large = updates too large"),
    "ppo_ratio": ("probability ratio", "near 1 (exactly 1 on the first minibatch)"),
    "ppo_length": ("response length", "stable; racing to max_new_tokens or 1 = reward hacking"),
    "ppo_eos": ("EOS rate", "rises toward 1: answers end with <|im_end|>"),
    "ppo_value": ("policy / value loss", "value loss falls as the critic learns"),
}

# --- runs pane
RUNS_ROOT = "Root"
RUNS_ROOT_HELP = "The folder whose run directories are listed (nested ones too); Enter to change it"
RUNS_COLUMNS = {"name": "Run", "stage": "Stage", "status": "Status", "steps": "Step", "metrics": "Last metrics",
                "started": "Started"}
RUNS_SUMMARY = "{n} runs: {counts}"
RUNS_NO_ROOT = ("{root} does not exist yet. Runs started from the Train pane or with `workbench train` appear "
                "here; type another root above and press Enter.")
RUNS_EMPTY = ("No runs under {root}. Start one in the Train pane, or: workbench train pretrain --config "
              "configs/pretrain/tiny.yaml --out {root}/pretrain")
RUNS_NONE_SELECTED = "No run selected"
RUNS_DETAIL = ("{name}  {stage}  ", "  step {steps}  {when}")  # around the coloured status
RUNS_HELD = "training: {holder}"
RUNS_PARENT = "from {parent}"
RUNS_REWARD = "reward model {rm}"
RUNS_TREE_REWARD = "  ← scored by {rm}"
RUNS_TREE_OUTSIDE = "  ← from {parent}"
RUNS_OPENED = "Monitor: {name}"
RUNS_COPIED = "Copied: {command}"
RUNS_COPY_HINT = "   (c copies it)"
RUNS_CANNOT_DELETE = "{name} is training: stop it before deleting it"
RUNS_DELETE_ASK = "Delete {name} ({stage}, {status}, step {steps})? Its checkpoints, metrics and logs are removed."
RUNS_DELETE_CHILDREN = "\nRuns made from it (they keep their own weights, but lose their parent): {children}."
RUNS_DELETED = "Deleted {name}"
RUNS_COMMANDS = {  # the command palette: (title, help)
    "open": ("Runs: open in the Monitor", "Show the selected run's curves in the Monitor"),
    "add": ("Runs: add to the Monitor", "Overlay the selected run on the runs the Monitor shows"),
    "resume": ("Runs: resume", "Continue the selected stopped, crashed or failed run (the Train pane runs it)"),
    "copy": ("Runs: copy the command", "Copy `workbench train STAGE --resume RUN` for the selected run"),
    "play": ("Runs: open in the Playground", "Chat with the selected run's latest checkpoint (a reward model: Score with it)"),
    "delete": ("Runs: delete", "Delete the selected run directory (asks first; never a running one)"),
    "refresh": ("Runs: refresh", "Scan the root again now (it also refreshes every few seconds)"),
    "root": ("Runs: change the root", "Type the folder whose runs are listed"),
}


# --- playground pane
PLAY_CKPT = "model"
PLAY_CKPT_PLACEHOLDER = "a run dir (its latest checkpoint) or a checkpoint, e.g. runs/tiny/sft"
PLAY_RM = "RM"
PLAY_RM_PLACEHOLDER = "a reward model (Compare, Score)"
PLAY_SETTINGS = (("temperature", "temp", "0.8"), ("top_k", "top-k", "0"), ("top_p", "top-p", "1.0"),
                 ("max_new_tokens", "max new", "128"))
PLAY_GREEDY = "greedy"
PLAY_NUMBER = "{name} must be a number, got {value!r}"
PLAY_MODES = (("chat", "Chat"), ("compare", "Compare"), ("probe", "Probe"), ("score", "Score"))
PLAY_LOADING = "loading {spec}…"
PLAY_NO_CKPT = "Pick a model above: a run directory (its latest checkpoint) or a checkpoint."
PLAY_NO_RM = "Pick a reward model above (RM): a `workbench train rm` run."
PLAY_ERROR = "✗ {error}"
PLAY_BUG = "✗ bug: {error!r} (please report it)"
# chat
CHAT_SYSTEM = "system"
CHAT_SYSTEM_PLACEHOLDER = "a system message (optional)"
CHAT_INPUT_PLACEHOLDER = "a message; Enter sends · ↑ in the history, e edits a turn, del removes it"
CHAT_EMPTY = "Talk to the model: type below and press Enter. It answers with the ChatML template and stops at <|im_end|>."
CHAT_ROLE = {"system": "system", "user": "you", "assistant": "model"}
CHAT_STREAMING = "answering… {n} tokens · esc stops"
CHAT_DONE = "{n} tokens · {how}"
CHAT_ENDED = "ended with {token}"
CHAT_CUT = "cut at max new tokens (no <|im_end|>)"
CHAT_STOPPED = "stopped"
CHAT_DROPPED = " · the {n} oldest turns left out: the model's context is full"
CHAT_EDITING = "editing turn {n} ({role}): Enter saves{regen} · esc cancels"
CHAT_REGEN = " and answers again"
CHAT_PROMPT_TITLE = "what the model sees: {n} tokens (the history + <|im_start|>assistant)"
CHAT_BINDINGS = {"clear": "Clear", "tokens": "Tokens", "stop": "Stop"}
# compare
COMPARE_CKPTS = "models"
COMPARE_CKPTS_PLACEHOLDER = "2-4 run dirs (space-separated) or a pipeline root: its base, SFT, DPO, PPO"
COMPARE_ANSWER = "answer"
COMPARE_ANSWER_PLACEHOLDER = "expected (optional)"
COMPARE_PROMPT_PLACEHOLDER = "a prompt for every model; Enter asks · ctrl+r a held-out question"
COMPARE_EMPTY = "The same prompt to 2-4 checkpoints at once, answers side by side (same sampling, same seed)."
COMPARE_STATS = "{n} tok · logp {logp} · RM {rm}{correct}"
COMPARE_WAITING = "waiting…"
COMPARE_RUNNING = "answering {i} of {n}…"
COMPARE_DONE = "{n} answered{failed}{seed}{task}"
COMPARE_FAILED = ", {n} failed"
COMPARE_NOT_ASKED = "(not asked: stopped)"
COMPARE_TASK = " · checked against “{answer}”"
COMPARE_NO_TASK = " · no answer to check (type one in “answer”, or ctrl+r picks a held-out question)"
# probe
PROBE_TEXT_PLACEHOLDER = "a context; the next-token distribution updates as you type"
PROBE_CHAT = "chat"
PROBE_ANSWER_PLACEHOLDER = "the answer so far (clicking a token adds to it)"
PROBE_TOPK = "top"
PROBE_EMPTY = "Type a context: the model's most likely next tokens appear here. Click one (or Enter on it) to add it."
PROBE_HEAD = "{n} context tokens · the top {k} hold {mass:.1%} of the probability · {ms:.0f} ms"
PROBE_SPECIAL = "{token} is a special token: its text would be read as plain characters, not as the token"
PROBE_ENDS = "{token}: the answer would end here"
PROBE_PARTIAL = "That token is part of a character split across tokens: it has no text of its own to add."
# score
SCORE_PROMPT_PLACEHOLDER = "a prompt"
SCORE_RESPONSE_PLACEHOLDER = "response {n}"
SCORE_EMPTY = "A prompt and two responses: the reward model scores each; Enter in any field scores them."
SCORE_ROW = "response {n}: score {score:+.3f}  (raw {raw:+.3f})"
SCORE_NORMALISED = "scores normalised by the RM's reward stats (mean {mean:.3f}, std {std:.3f}), as `workbench eval` reports them"
SCORE_PREFER = "P(response 1 preferred) = σ(raw₁ − raw₂) = {p:.1%}  (Bradley-Terry)"
PLAY_COMMANDS = [  # (action, title, help) for the command palette
    ("mode('chat')", "Playground: chat", "Talk to a checkpoint with the ChatML template"),
    ("mode('compare')", "Playground: compare", "The same prompt to 2-4 checkpoints, side by side"),
    ("mode('probe')", "Playground: probe", "The top-k next tokens as you type"),
    ("mode('score')", "Playground: score", "Reward-model scores of two responses, and P(first preferred)"),
    ("clear_chat", "Playground: clear the chat", "Forget the conversation"),
    ("tokens", "Playground: show the tokens", "The chat as the model sees it, token by token"),
    ("stop_request", "Playground: stop", "Stop the answer being generated"),
    ("random_prompt", "Playground: a held-out question", "Compare on a held-out question with a checkable answer"),
]

# --- report pane
REPORT_PATH_LABEL = "root"
REPORT_PATH_PLACEHOLDER = "a pipeline root (report.json or recipe.yaml), or run directories"
REPORT_PATH_HELP = "Enter opens it; several run directories: separated by spaces (quote a path with spaces)"
REPORT_EMPTY = ("No pipeline root open.\n\n"
                "• Type one above and press Enter: the folder `workbench pipeline --out ROOT` writes\n"
                "  (its report card, curves and answers), also while its pipeline is still running.\n"
                "• Or type run directories (runs/sft runs/dpo): their stages, curves and Chinchilla standing.\n"
                "• Or start the workbench on it:  workbench tui runs/cpu-demo")
REPORT_OPENING = "Reading {source}…"
REPORT_SUMMARY = "{name} · {stages} stages · {wall} · written {written}"
REPORT_SUMMARY_PARTIAL = "{name} · {stages} stages · no report yet"
REPORT_SUMMARY_RUNS = "{n} runs"
REPORT_NOT_WRITTEN = ("The report card is not written yet (the pipeline is still running, or it stopped): "
                      "below, what the stages' run directories hold so far. F5 reads them again.")
REPORT_RUNS_ONLY = "Run directories, not a pipeline root: no report card; their stages, curves and standing."
REPORT_TABS = {"card": "Card", "curves": "Curves", "answers": "Answers", "chinchilla": "Chinchilla"}
REPORT_POLICIES = "policies ({section} answers; KL on sampled ones)  · s: {other}"
REPORT_RM = "reward model (pairwise accuracy)"
REPORT_STAGES = "stages"
REPORT_WHOLE = "whole chain: {wall} wall time (evaluation {eval})"
REPORT_TOKENIZER = "tokenizer: {path}, {vocab:,} tokens, trained in {wall}"
REPORT_NO_CURVES = "No training curves yet: no stage has written a train record to its metrics.jsonl."
REPORT_NO_EXAMPLES = "No answers to show: the report card has none (its recipe's report.examples is 0, or it is not written yet)."
REPORT_EXAMPLE_HEAD = "{i}. {prompt}"
REPORT_EXAMPLE_REF = "   reference: {reference}"
REPORT_EXAMPLE_PROMPT = "prompt"
# Each curve panel's hint, by metric: the Monitor's wording of what healthy looks like.
REPORT_CURVE_HINTS = {"loss": MONITOR_PANELS["loss"][1], "objective/scores": MONITOR_PANELS["ppo_scores"][1],
                      "rewards/margins": MONITOR_PANELS["dpo_margins"][1], "accuracy": MONITOR_PANELS["rm_accuracy"][1],
                      "objective/kl": MONITOR_PANELS["ppo_kl"][1]}
REPORT_KEYS = {"open": "Open", "section": "Sampled", "next": "Next"}  # footer: short
REPORT_COMMANDS = {  # the command palette: (title, help)
    "open": ("Report: open a pipeline root", "Type a pipeline root, or run directories, to report on"),
    "reload": ("Report: read again", "Read the root again (a pipeline still running has written more)"),
    "section": ("Report: greedy / sampled answers", "Show the policies' metrics on greedy or on sampled answers"),
    "next": ("Report: next section", "Card → Curves → Answers → Chinchilla"),
    "show('card')": ("Report: the report card", "The policies, the reward model and the stages as tables"),
    "show('curves')": ("Report: the curves", "Loss per stage, PPO score, DPO margin, RM accuracy, PPO KL"),
    "show('answers')": ("Report: the answers", "Held-out prompts with every row's answer side by side"),
    "show('chinchilla')": ("Report: the Chinchilla calculator", "A budget in FLOPs, parameters or tokens → the "
                           "compute-optimal split; where each run stands"),
}
CHIN_UNITS = {"flops": "FLOPs", "params": "parameters", "tokens": "tokens"}
CHIN_PLACEHOLDER = "a budget: 1e18, 6.8M, 2B"
CHIN_HELP = "Chinchilla (Hoffmann et al. 2022): D ≈ 20·N tokens, C ≈ 6·N·D FLOPs"
CHIN_WAITING = "Type an amount above: the compute-optimal model size, tokens and compute for it."
CHIN_RESULT = "compute-optimal:  {params} parameters  ·  {tokens} tokens  ·  {flops} FLOPs"
CHIN_STANDING = "where each run stands (fine-tuning stages count their own tokens only)"
CHIN_NO_RUNS = "No run to place: open a pipeline root or run directories with a started stage."
CHIN_COLUMNS = ("run", "stage", "params", "tokens seen", "tokens/param", "of optimal", "optimal N for its compute",
                "verdict", "from")
CHIN_VERDICT = "{name}: {verdict}"
CHIN_NO_STANDING = "no standing: {error}"
CHIN_RANGE = "{what} {text}: out of range (its compute-optimal split is beyond what a float holds)"
