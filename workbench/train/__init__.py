"""Training: one engine (engine.py) and one small module per stage (pretrain, sft, reward, dpo, ppo)."""
