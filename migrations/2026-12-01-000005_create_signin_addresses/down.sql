DROP TABLE signin_addresses;
