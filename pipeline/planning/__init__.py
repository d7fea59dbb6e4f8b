"""Pure planning: segments, prompts, budget and the full render plan of a script."""
