DROP TABLE store_closures;
DROP TABLE stores;
