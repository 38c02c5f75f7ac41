"""Hardware profiles: what a deployment target can hold and how fast it runs a model.

A :class:`HardwareProfile` states a target's memory for weights, memory bandwidth, compute
backend, CPU features, preferred runtime and format, and default context length. The compress
package sizes recipes against it, the runtimes take threads and GPU layers from it, and the
device agent reports which profile it runs under.

The catalog ships as TOML files inside this package (each figure with its vendor source in a
comment); :func:`detect_profile` builds one for the local machine::

    from edgeward.hardware_profiles import get_profile, detect_profile

    pi = get_profile("raspberry-pi-5-8gb")
    print(pi.memory_bytes, pi.bandwidth_gbps)
    here = detect_profile()
    print(here.profile.cores, here.measured)

This package depends on :mod:`edgeward.errors` only.
"""

from edgeward.hardware_profiles._catalog import catalog, get_profile, resolve_profile
from edgeward.hardware_profiles._detect import DetectedProfile, cpu_flops_per_cycle, detect_profile
from edgeward.hardware_profiles._schema import (
    KNOWN_CPU_FEATURES,
    HardwareProfile,
    load_profile_file,
)

__all__ = [
    "KNOWN_CPU_FEATURES",
    "DetectedProfile",
    "HardwareProfile",
    "catalog",
    "cpu_flops_per_cycle",
    "detect_profile",
    "get_profile",
    "load_profile_file",
    "resolve_profile",
]
