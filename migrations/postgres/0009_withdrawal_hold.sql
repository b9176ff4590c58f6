-- A full pass that would withdraw more than register.max_withdraw_share of the known cases (a
-- register view caught half-loaded) holds the withdrawals instead and records when; a full pass
-- at least one poll interval later that sees the same withdraws them (state::poll).
ALTER TABLE poll_state ADD COLUMN withdrawals_held_at TIMESTAMPTZ;
