DROP TABLE evidence_deletions;
DROP TABLE evidence;
