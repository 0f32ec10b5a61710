"""Runs split over processes: shards, torch.distributed worlds, summaries and their merge."""
