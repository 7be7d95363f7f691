fn main() {
    println!("podvisor-sim: not yet");
}
