"""The iNeRF pose optimizer: ray sampling, batched hypotheses, tracking policy, evaluation."""
