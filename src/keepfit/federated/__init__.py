"""Federated fine-tuning on Flower (the ``federated`` extra): clients train the head or LoRA adapters on their own
rows, the server averages (FedAvg / FedProx), and the average registers through the gate like any candidate.

Importing this package needs no Flower; running a federation does (MissingExtraError otherwise).
"""

from keepfit.federated.run import FederateResult, federate, require_flower
from keepfit.federated.shards import check_shard, deal_rows

__all__ = ["federate", "FederateResult", "require_flower", "deal_rows", "check_shard"]
