"""The TNC Server core: PB-TNC and IF-TNCCS 1.1 connections, the IMV manager
and the recommendation policy.  Nothing in this package does I/O."""
