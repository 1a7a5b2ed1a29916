fn main() {} // placeholder until the WAL bench lands
