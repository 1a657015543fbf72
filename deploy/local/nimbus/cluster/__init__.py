"""The local cluster: supervisord runs the programs listed in deploy/local/cluster.toml.

`make up` / `make down` run `python -m nimbus.cluster up|down`; tests use LocalCluster.
"""

from nimbus.cluster.cluster import ClusterError, LocalCluster
from nimbus.cluster.ports import free_port

__all__ = ["ClusterError", "LocalCluster", "free_port"]
