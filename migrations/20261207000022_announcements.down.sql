DROP VIEW reporting.announcement_receipts;
DROP VIEW reporting.announcements;
DROP TABLE announcement_receipts;
DROP TABLE announcement_deliveries;
DROP TABLE announcements;
