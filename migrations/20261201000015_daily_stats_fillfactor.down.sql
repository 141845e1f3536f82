ALTER TABLE daily_store_stats RESET (fillfactor);
