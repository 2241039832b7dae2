//! OVF documents of VMs, in the shape oVirt writes to its OVF_STORE (placeholder; being written).
