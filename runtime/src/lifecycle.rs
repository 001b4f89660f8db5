//! The steps of an in-place deployment on this host, as the agent and `rollcage local` run them.
