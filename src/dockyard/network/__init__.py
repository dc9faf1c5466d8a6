"""Networking: IPAM, the bridge driver's data plane (netns, links, firewall,
userland proxy), the embedded DNS server, and the network service."""
