"""``pyxdp filter``: DDoS protection at XDP speed (rules, data plane, control plane)."""
