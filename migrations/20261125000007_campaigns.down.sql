DROP INDEX tasks_campaign_idx;
DROP TABLE campaigns;
