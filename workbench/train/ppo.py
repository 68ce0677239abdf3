"""PPO from a reward model (RLHF as in Ziegler et al. 2019, Stiennon et al. 2020, InstructGPT; TRL's PPOTrainer).

    workbench train ppo --config configs/ppo/tiny.yaml --from runs/sft reward_model=runs/rm --out runs/ppo

One engine step = one rollout of `batch_size` prompts, then `ppo_epochs` passes over it in
`num_minibatches` shuffled minibatches, each an optimizer update of the policy and the critic
together (one AdamW, TRL-style). Reading top to bottom: setup, the rollout, the rewards and
advantages, the PPO updates, evaluation, saving.

Models: the policy (from --from, trained), a frozen copy of it as the KL reference, the frozen reward
model, and a critic: the reward model's backbone with a zero-initialised value head, so the value
starts at 0 and learns from returns (TRL initialises its value model from the reward model too).
A checkpoint is the policy (it loads, generates and exports like any model) plus the critic in
`value/`; trainer.json keeps the adaptive KL coefficient so a resumed run continues it.

Under torchrun each rank samples its own rollouts (its share of the prompts, a seed of its own) and
takes the same number of updates; rewards and advantages are whitened, and the KL controller
updated, with statistics over every rank's rollouts; the logged metrics are the ranks' means.
"""

from __future__ import annotations

import time

import torch

from workbench.errors import WorkbenchError
from workbench.model.generate import SamplingConfig, generate
from workbench.train import distributed
from workbench.train.data import ExampleLoader, load_examples, split_validation
from workbench.train.engine import Stage
from workbench.train.models import (ScalarHeadModel, frozen_copy, last_index, load_parent,
                                    load_reward_model, load_scalar_model, write_scalar_model)
from workbench.train.rlhf import AdaptiveKLController, FixedKLController, gae, kl_penalty_rewards, masked_mean, whiten

VALUE_DIR = "value"


def same_tokenizer(a: dict | None, b: dict | None) -> bool:
    """Do two checkpoints' tokenizer records denote the same ids? Names alone do not decide it: a
    trained tokenizer is copied into each checkpoint, so its path differs while its hash is the same."""
    a, b = a or {"name": "cl100k_base"}, b or {"name": "cl100k_base"}  # no record means cl100k_base
    keys = ("sha256", "vocab_size", "eot_id", "im_start_id", "im_end_id", "pad_id")
    if any(k in a and k in b and a[k] != b[k] for k in keys):
        return False
    if a.get("sha256") and b.get("sha256"):
        return True
    return a.get("name") == b.get("name")


def rollout_seed(seed: int, step: int, rank: int = 0) -> int:
    """The sampling (and minibatch shuffle) seed of a rollout: a function of (seed, step, rank) only."""
    return (seed * 1_000_003 + step + rank * 1_000_000_007) % (2 ** 63 - 1)


def response_logprobs(model, seqs, labels, attn, prompt_len: int, temperature: float, pad_id: int):
    """(log pi of each response token [B, N] at `temperature`, the MoE aux loss), from the distribution
    the sampler draws from. generate() never samples <|pad|>, so it is left out of the softmax here
    too (Transformer.logprobs normalises over it, which differs from the sampler's numbers by up to
    p(<|pad|>), measured ~4e-3 on the tiny model). <|pad|> is the tokenizer's last id, so the head's
    vocabulary limit can simply stop before it."""
    from workbench.model.loss import token_logprobs

    vocab = model.cfg.vocab_size
    limit = pad_id if pad_id == vocab - 1 else vocab
    out = model(seqs, attention_mask=attn, return_hidden=True, logits_to_keep=0)
    lp, _ = token_logprobs(out.hidden, model.lm_head.weight, labels, vocab_limit=limit, temperature=temperature)
    return lp[:, prompt_len - 1:], out.aux_loss


class PPOStage(Stage):
    name = "ppo"

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        cfg, dev = self.cfg, self.engine.device
        self.model, self.tokenizer, _ = load_parent(cfg.init_from, "policy", dev, cfg)
        self.reference = frozen_copy(self.model)
        self.reward_model, rm_meta, self.rm_path = load_reward_model(cfg.reward_model, dev)
        if not same_tokenizer(rm_meta.get("tokenizer"), self.tokenizer.describe()):
            raise WorkbenchError(f"reward_model {cfg.reward_model}: its tokenizer "
                                 f"({(rm_meta.get('tokenizer') or {}).get('name', 'cl100k_base')}) differs from the "
                                 f"policy's ({self.tokenizer.name}); train the reward model from the same base model")
        stats = rm_meta.get("extra", {}).get("reward_stats") or {}
        if cfg.normalize_reward and not (isinstance(stats.get("mean"), (int, float))
                                         and isinstance(stats.get("std"), (int, float)) and stats["std"] > 0):
            raise WorkbenchError(f"reward_model {cfg.reward_model}: no reward statistics (extra.reward_stats) to "
                                 f"normalise scores with; set normalize_reward=false")
        self.reward_stats = (float(stats["mean"]), float(stats["std"])) if cfg.normalize_reward else (0.0, 1.0)
        # The critic starts as the reward model (a fresh load = a deep copy that also honours the run's
        # gradient_checkpointing/compile switches) with a zero value head: V = 0 before any update.
        backbone, _ = load_scalar_model(self.rm_path, dev, gradient_checkpointing=cfg.gradient_checkpointing,
                                        compile=cfg.compile)
        self.critic = ScalarHeadModel(backbone.backbone, zero_init=True)
        for p in self.critic.parameters():
            p.requires_grad_(True)
        self.sep = self.tokenizer.encode("\n")  # what follows <|im_end|> in every trained sequence
        need = cfg.max_prompt_len + cfg.max_new_tokens
        rm_backbone = self.reward_model.backbone
        for what, m, n in (("policy", self.model, need), ("reward model", rm_backbone, need + len(self.sep))):
            if n > m.cfg.max_seq_len:
                raise WorkbenchError(f"max_prompt_len ({cfg.max_prompt_len}) + max_new_tokens ({cfg.max_new_tokens}) "
                                     f"exceeds the {what}'s context of {m.cfg.max_seq_len} tokens")
        load = dict(max_len=cfg.max_prompt_len, fmt=cfg.format, skip_bad=cfg.skip_bad, log=self.engine.log)
        examples, self.data_info = load_examples(cfg.data, "prompt", self.tokenizer, **load)
        if cfg.val_data:
            train, val = examples, load_examples(cfg.val_data, "prompt", self.tokenizer, **load)[0]
        else:
            train, val = split_validation(examples, cfg.val_fraction, cfg.seed)
        self.train_prompts = [e.rendered.input_ids for e in train]
        self.val_prompts = [e.rendered.input_ids for e in val]
        self.loader = ExampleLoader(self.train_prompts, cfg.batch_size, cfg.seed, collate=list)
        self.kl_ctl = (AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon) if cfg.adaptive_kl
                       else FixedKLController(cfg.kl_coef))

    def batches(self, start: int):
        yield from self.loader.batches(start)

    def trainable(self) -> dict:
        return {"policy": self.model, "value": self.critic}

    # ------------------------------------------------------------------ rollout
    def _rollout(self, prompts: list[list[int]], sampling: SamplingConfig) -> dict:
        """Generate, then the tensors everything else works on: sequences [B, P+N], attention mask,
        response-only labels, response mask [B, N], finished [B] and the (penalised, normalised) score."""
        tok, dev = self.tokenizer, self.engine.device
        t0 = time.perf_counter()
        # generate() puts the policy in eval mode and samples with a KV cache (our models have no dropout,
        # so the train-mode forward passes below compute the same distribution)
        g = generate(self.model, prompts, sampling, stop_ids=[tok.im_end_id], pad_id=tok.pad_id, device=dev)
        gen_time = time.perf_counter() - t0
        seqs, P = g.sequences, g.prompt_len
        rmask = g.response_mask
        attn = torch.cat([seqs[:, :P] != tok.pad_id, rmask], dim=1).long()  # prompt text never encodes to pad
        labels = torch.where(torch.cat([torch.zeros_like(seqs[:, :P], dtype=torch.bool), rmask], 1), seqs, -100)
        finished = torch.tensor(g.finished, device=dev)
        with self.engine.autocast():
            raw = self._score(seqs, attn, labels, finished)
        mean, std = self.reward_stats
        score = (raw - mean) / std - self.cfg.missing_eos_penalty * (~finished).float()
        return {"seqs": seqs, "P": P, "attn": attn, "labels": labels, "rmask": rmask, "finished": finished,
                "score": score, "norm_score": (raw - mean) / std, "time": gen_time}

    def _score(self, seqs, attn, labels, finished) -> torch.Tensor:
        """Reward-model score at the last token. A finished response gets the separator after its
        <|im_end|>, so the reward model reads the sequence in the form it was trained on (the
        separator is not part of the response, as in training: its label is -100)."""
        extra = len(self.sep)
        ids = torch.cat([seqs, torch.full_like(seqs[:, :extra], self.tokenizer.pad_id)], 1)
        mask = torch.cat([attn, torch.zeros_like(attn[:, :extra])], 1)
        labels = torch.cat([labels, torch.full_like(labels[:, :extra], -100)], 1)
        if extra:
            end = last_index(attn) + 1
            for i in torch.nonzero(finished).flatten().tolist():
                e = int(end[i])
                ids[i, e:e + extra] = torch.tensor(self.sep, device=ids.device)
                mask[i, e:e + extra] = 1
        return self.reward_model.score(ids, mask, labels)[0]

    # ------------------------------------------------------------------ one PPO step
    def train_step(self, micro: list) -> dict:
        cfg, policy, critic = self.cfg, self.model, self.critic
        t_start = time.perf_counter()
        step = self.engine.step  # steps done so far: the rollout and shuffles depend on (seed, step, rank) only
        world = self.engine.world  # several ranks: each samples its own rollouts (its own prompts and seed)
        seed = rollout_seed(cfg.seed, step, world.rank)
        # Statistics over the job's rollouts, not one rank's: whitening and the KL controller see them all.
        job_sum = (lambda t: distributed.all_sum(t, self.engine.device)) if world.active else None
        sampling = SamplingConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                  top_k=0, top_p=1.0, seed=seed)  # no truncation: log-probs are of what we sample
        with torch.no_grad():
            roll = self._rollout(micro[0], sampling)
            seqs, P, attn, labels, rmask = roll["seqs"], roll["P"], roll["attn"], roll["labels"], roll["rmask"]
            N = rmask.shape[1]
            m = rmask.float()
            with self.engine.autocast():
                # Old log-probs are recomputed with the very forward pass the updates use (not taken from
                # the KV-cached sampler), so the first minibatch's ratio is exactly 1.
                old_lp = self._logprobs(policy, seqs, labels, attn, P)[0] * m
                ref_lp = self._logprobs(self.reference, seqs, labels, attn, P)[0] * m
                # V(s_t): the critic's output at the token before response token t.
                old_values = critic(seqs, attention_mask=attn)[0][:, P - 1:P - 1 + N].float() * m
            kl_coef = self.kl_ctl.value
            rewards, kl = kl_penalty_rewards(roll["score"], old_lp, ref_lp, rmask, kl_coef)
            if cfg.whiten_rewards:
                rewards = whiten(rewards, rmask, shift_mean=False, all_sum=job_sum)
            advantages, returns = gae(rewards, old_values, rmask, cfg.gamma, cfg.lam)
            advantages = whiten(advantages, rmask, all_sum=job_sum)

        B = seqs.shape[0]
        mb = B // cfg.num_minibatches
        gen = torch.Generator().manual_seed(seed)
        sums = {k: 0.0 for k in ("loss", "grad_norm", "pg", "vf", "approxkl", "clipfrac", "ratio", "vclip")}
        first, n_updates, applied = {}, 0, True
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(B, generator=gen).to(seqs.device)
            for s in range(0, B, mb):
                idx = order[s:s + mb]
                with self.engine.autocast():
                    loss, stats = self._ppo_loss(seqs[idx], labels[idx], attn[idx], rmask[idx], P, old_lp[idx],
                                                 old_values[idx], advantages[idx], returns[idx])
                norm, ok = self.engine.update(loss)
                applied &= ok
                if not first:
                    first = stats
                for k, v in stats.items():
                    sums[k] += v
                sums["loss"] += float(loss.detach())
                sums["grad_norm"] += norm
                n_updates += 1
        mean = {k: v / n_updates for k, v in sums.items()}

        seq_kl = kl.sum(1)
        score = roll["score"]
        if world.active:
            kl_sum, n = distributed.all_sum([float(seq_kl.sum()), B], self.engine.device).tolist()
            self.kl_ctl.update(kl_sum / n, int(n))
        else:
            self.kl_ctl.update(float(seq_kl.mean()), B)
        elapsed = time.perf_counter() - t_start
        return {
            "loss": mean["loss"], "grad_norm": mean["grad_norm"], "applied": applied,
            "tokens": int(attn.sum()), "samples": B,
            "objective/kl": float(seq_kl.mean()),
            "objective/entropy": float((-old_lp).sum(1).mean()),
            "objective/non_score_reward": float((-kl_coef * seq_kl).mean()),
            "objective/rlhf_reward": float((score - kl_coef * seq_kl).mean()),
            "objective/scores": float(score.mean()),
            "policy/approxkl": mean["approxkl"], "policy/clipfrac": mean["clipfrac"],
            "policy/approxkl_first": first["approxkl"],
            "loss/policy": mean["pg"], "loss/value": mean["vf"],
            "val/ratio": mean["ratio"], "val/ratio_first": first["ratio"], "val/clipfrac_value": mean["vclip"],
            "response_length": float(m.sum(1).mean()), "eos_rate": float(roll["finished"].float().mean()),
            "kl_coef": kl_coef, "time/rollout": roll["time"], "time/rollout_share": roll["time"] / max(elapsed, 1e-9),
        }

    def _logprobs(self, model, seqs, labels, attn, P):
        return response_logprobs(model, seqs, labels, attn, P, self.cfg.temperature, self.tokenizer.pad_id)

    def _ppo_loss(self, seqs, labels, attn, rmask, P, old_lp, old_values, adv, returns):
        """Clipped surrogate + clipped value loss on one minibatch (Schulman et al. 2017; TRL's form)."""
        cfg = self.cfg
        N = rmask.shape[1]
        lp, aux = self._logprobs(self.model, seqs, labels, attn, P)
        vpred, v_aux = self.critic(seqs, attention_mask=attn)
        vpred = vpred[:, P - 1:P - 1 + N].float()

        log_ratio = (lp - old_lp) * rmask
        ratio = torch.exp(log_ratio)
        pg1 = -adv * ratio
        pg2 = -adv * ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range)
        pg_loss = masked_mean(torch.max(pg1, pg2), rmask)
        # The value moves at most clip_range_value from its rollout estimate (PPO2's value clipping).
        v_clipped = old_values + (vpred - old_values).clamp(-cfg.clip_range_value, cfg.clip_range_value)
        vf1, vf2 = (vpred - returns) ** 2, (v_clipped - returns) ** 2
        vf_loss = 0.5 * masked_mean(torch.max(vf1, vf2), rmask)
        loss = pg_loss + cfg.vf_coef * vf_loss
        for a in (aux, v_aux):  # MoE load-balancing keeps training both routers
            if a is not None:
                loss = loss + a
        with torch.no_grad():
            stats = {"pg": float(pg_loss), "vf": float(vf_loss),
                     "approxkl": float(0.5 * masked_mean(log_ratio ** 2, rmask)),
                     "clipfrac": float(masked_mean((pg2 > pg1).float(), rmask)),
                     "ratio": float(masked_mean(ratio, rmask)),
                     "vclip": float(masked_mean((vf2 > vf1).float(), rmask))}
        return loss, stats

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict:
        if not self.val_prompts:
            return {}
        cfg = self.cfg
        limit = cfg.eval_batches * cfg.batch_size if cfg.eval_batches else len(self.val_prompts)
        prompts = self.val_prompts[:limit]
        sampling = SamplingConfig(max_new_tokens=cfg.max_new_tokens, temperature=0.0)
        scores, lengths, finished = [], [], []
        for s in range(0, len(prompts), cfg.batch_size):
            roll = self._rollout(prompts[s:s + cfg.batch_size], sampling)
            scores.append(roll["norm_score"].float())
            lengths.append(roll["rmask"].sum(1).float())
            finished.append(roll["finished"].float())
        return {"val/score": float(torch.cat(scores).mean()), "val/response_length": float(torch.cat(lengths).mean()),
                "val/eos_rate": float(torch.cat(finished).mean())}

    # ------------------------------------------------------------------ saving and resuming
    def write_model(self, dest) -> None:
        super().write_model(dest)
        (dest / VALUE_DIR).mkdir()
        write_scalar_model(self.critic, dest / VALUE_DIR, self.tokenizer,
                           extra={"kind": "value", "stage": self.name, "step": self.engine.step})

    def load_model(self, ckpt) -> None:
        super().load_model(ckpt)
        critic, _ = load_scalar_model(ckpt / VALUE_DIR, self.engine.device)
        self.critic.load_state_dict(critic.state_dict())

    def state_dict(self) -> dict:
        return {"kl_coef": self.kl_ctl.value}

    def load_state_dict(self, state: dict) -> None:
        if "kl_coef" in state:
            self.kl_ctl.value = float(state["kl_coef"])

    def lineage(self) -> dict:
        from workbench.model.checkpoint import file_sha256, weights_file

        return {"data": self.cfg.data, "val_data": self.cfg.val_data,
                "reward_model": {"path": str(self.rm_path.resolve()), "sha256": file_sha256(weights_file(self.rm_path))}}
