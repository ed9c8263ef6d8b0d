//! Fan-out under failure: downstream apps that are down, slow, throttling
//! or answering garbage, and a gateway killed mid-delivery.
